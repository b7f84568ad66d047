"""Tuning (`intsmooth tune`), the database lookup, and exactness of the tuned build.

One database is tuned here, with a few trials, for the small conv model; the tests then check
that it is found for the same architecture whatever the weights and calibration, not for other
shapes, that `intsmooth compile` applies it (and says so) or warns with the tune command, and
that the votes of the tuned build equal those of the untuned build and of the numpy reference.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import tvm
from conftest import random_images
from onnx import numpy_helper
from onnx_models import (
    conv_model,
    depthwise_model,
    ort_qdq_model,
    residual_model,
    signed_input_model,
)
from tvm import relax

from tvm_intsmooth.cli.main import main
from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.pipeline.build import build
from tvm_intsmooth.pipeline.phases import fused_module
from tvm_intsmooth.pipeline.smooth import smooth
from tvm_intsmooth.pipeline.tune import tunable_tasks, tune
from tvm_intsmooth.runtime import SmoothedClassifier
from tvm_intsmooth.schedule.database import (
    SCHEDULES_ENV,
    ScheduleLookup,
    find_database,
    load_database,
    workload_key,
)
from tvm_intsmooth.schedule.targets import host_can_run, resolve_target
from tvm_intsmooth.smoothing.reference import reference_counts

# The host's x86 target: the candidates are built and timed here.
TARGET = next((t for t in ("x86-vnni", "x86-avx2") if host_can_run(t)), "x86-vnni")
SIGMA = 0.5
BATCH = 10
SHAPE = (1, 12, 12)

pytestmark = [
    pytest.mark.skipif(
        not host_can_run(TARGET), reason="timing candidates needs an x86 CPU with AVX2"
    ),
    pytest.mark.slow,  # the module's database is tuned by `intsmooth tune` (MetaSchedule builds)
]


def other_weights(model: onnx.ModelProto, seed: int) -> onnx.ModelProto:
    """The same architecture with every weight and bias redrawn."""
    rng = np.random.default_rng(seed)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for init in out.graph.initializer:
        if init.name.startswith(("w", "b")) and not init.name.startswith("bn"):
            value = numpy_helper.to_array(init)
            redrawn = rng.normal(0, float(np.std(value)) + 0.1, value.shape).astype(value.dtype)
            init.CopyFrom(numpy_helper.from_array(redrawn, init.name))
    return out


@pytest.fixture(scope="module")
def schedules(tmp_path_factory):
    """A schedules folder holding one database, tuned by `intsmooth tune` (2 trials: one for
    each of the first two of the three tasks, kept even where slower than the default)."""
    root = tmp_path_factory.mktemp("tune")
    model = root / "conv.onnx"
    onnx.save(conv_model(), model)
    np.savez(root / "calib.npz", x=random_images(SHAPE, 32, seed=1), y=np.zeros(32, np.int64))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(SCHEDULES_ENV, str(root / "schedules"))
        argv = ["tune", str(model), "--sigma", str(SIGMA), "--calib", str(root / "calib.npz")]
        argv += ["--target", TARGET, "--batch", str(BATCH), "--trials", "2"]
        assert main([*argv, "--trials-per-iter", "1", "--keep", "all"]) == 0
    return root


@pytest.fixture(autouse=True)
def _use_schedules(schedules, monkeypatch):
    monkeypatch.setenv(SCHEDULES_ENV, str(schedules / "schedules"))


@pytest.fixture(scope="module")
def smoothed():
    return smooth(conv_model(), random_images(SHAPE, 32, seed=1), SIGMA, batch=BATCH)


def _key(model, calib_seed=2, sigma=SIGMA, batch=BATCH) -> str:
    calib = random_images(SHAPE, 16, seed=calib_seed)
    return workload_key(fused_module(smooth(model, calib, sigma, batch=batch).mod, TARGET))


def test_tune_writes_a_pruned_database_with_its_command(schedules, smoothed):
    key = workload_key(fused_module(smoothed.mod, TARGET))
    folder = schedules / "schedules" / TARGET / key
    info = json.loads((folder / "info.json").read_text())
    assert info["key"] == key and info["target"] == TARGET
    assert info["command"].startswith("intsmooth tune")
    assert "--trials 2 --trials-per-iter 1" in info["command"]
    names = {t["name"] for t in info["tasks"]}
    fused = fused_module(smoothed.mod, TARGET)
    expected = {t.task_name for t, _ in tunable_tasks(fused, resolve_target(TARGET))}
    assert names == expected and len(names) == 3  # two convolutions and the dense layer
    assert info["trials"] == 2 and sum(t["trials"] for t in info["tasks"]) == 2
    tuned = [t for t in info["tasks"] if t["best_us"]]
    records = (folder / "database_tuning_record.json").read_text().splitlines()
    assert len(records) == len(tuned) >= 1  # the best record of each tuned workload only
    assert all(t["gmacs"] > 0 and t["kept"] and t["default_us"] > 0 for t in tuned)


def test_database_serves_other_weights_calibration_and_sigma(smoothed):
    key = workload_key(fused_module(smoothed.mod, TARGET))
    assert _key(other_weights(conv_model(), seed=7), calib_seed=9, sigma=0.25) == key
    assert find_database(key, TARGET) is not None


def test_database_is_not_found_for_other_shapes(smoothed):
    key = workload_key(fused_module(smoothed.mod, TARGET))
    other = _key(conv_model(), batch=BATCH + 1)
    assert other != key
    assert find_database(other, TARGET) is None
    assert find_database(key, "x86-64") is None  # nor for another target


def _classifier(smoothed, schedules) -> tuple[SmoothedClassifier, ScheduleLookup]:
    lookup = ScheduleLookup(TARGET, schedules)
    ex = build(smoothed.mod, TARGET, require_integer_only=True, schedules=lookup)
    return SmoothedClassifier(relax.VirtualMachine(ex, tvm.cpu()), smoothed.metadata()), lookup


@pytest.mark.parametrize("weights_seed", [None, 11])
def test_tuned_votes_equal_untuned_and_numpy_reference(weights_seed):
    model = conv_model() if weights_seed is None else other_weights(conv_model(), weights_seed)
    smoothed = smooth(model, random_images(SHAPE, 32, seed=3), SIGMA, batch=BATCH)
    tuned, lookup = _classifier(smoothed, "auto")
    assert lookup.used is not None and lookup.tuned_functions >= 1
    untuned, plain = _classifier(smoothed, None)
    assert plain.used is None and plain.tuned_functions == 0
    image = random_images(SHAPE, 1, seed=5)[0]
    for seed in (0, 2**64 - 1):
        counts = tuned.counts(image, 30, seed=seed)
        np.testing.assert_array_equal(counts, untuned.counts(image, 30, seed=seed))
        np.testing.assert_array_equal(counts, reference_counts(smoothed, image, 30, seed))
    assert np.count_nonzero(counts) >= 2  # the comparison sees more than one class


MORE_MODELS = {
    "depthwise": (depthwise_model, (3, 12, 12)),
    "residual": (residual_model, (3, 10, 10)),
    "signed_input": (signed_input_model, (3, 9, 9)),
    "qdq": (lambda folder: ort_qdq_model(residual_model, (3, 10, 10), folder), (3, 10, 10)),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MORE_MODELS))
def test_tuned_votes_equal_untuned_and_numpy_for_other_graphs(name, tmp_path):
    """One tuned candidate for every kernel (kept whatever its speed), so that every kernel of
    the tuned build runs a MetaSchedule schedule: depthwise, residual adds, signed (shifted)
    inputs, an ONNX Runtime QDQ model."""
    make, shape = MORE_MODELS[name]
    model = make(tmp_path) if name == "qdq" else make()
    smoothed = smooth(model, random_images(shape, 32, seed=3), SIGMA, batch=BATCH)
    spec = resolve_target(TARGET)
    tasks = len(tunable_tasks(fused_module(smoothed.mod, spec), spec))
    folder = tmp_path / "db"
    tune(smoothed, TARGET, trials=tasks, trials_per_iter=1, keep="all", output=folder, progress=0)
    tuned, lookup = _classifier(smoothed, folder)
    assert lookup.tuned_functions >= 1
    untuned, _ = _classifier(smoothed, None)
    image = random_images(shape, 1, seed=5)[0]
    for seed in (0, 2**64 - 1):
        counts = tuned.counts(image, 30, seed=seed)
        np.testing.assert_array_equal(counts, untuned.counts(image, 30, seed=seed))
        np.testing.assert_array_equal(counts, reference_counts(smoothed, image, 30, seed))


def test_compile_applies_the_database_and_says_so(schedules, tmp_path, capsys):
    argv = ["compile", str(schedules / "conv.onnx"), "--sigma", "0.25"]
    argv += ["--calib", str(schedules / "calib.npz"), "--target", TARGET, "--batch", str(BATCH)]
    assert main([*argv, "-o", str(tmp_path / "tuned")]) == 0
    out = capsys.readouterr()
    meta = json.loads((tmp_path / "tuned" / "meta.json").read_text())
    assert meta["schedules"]["database"] and meta["schedules"]["tuned_functions"] >= 1
    assert f"tuned schedules: {meta['schedules']['database']}" in out.out
    assert "untuned" not in out.err


def test_compile_without_database_warns_with_the_tune_command(schedules, tmp_path, capsys):
    argv = ["compile", str(schedules / "conv.onnx"), "--sigma", "0.25"]
    argv += ["--calib", str(schedules / "calib.npz"), "--target", TARGET, "--batch", "4"]
    assert main([*argv, "-o", str(tmp_path / "untuned")]) == 0
    err = capsys.readouterr().err
    assert "the build is untuned" in err
    command = (
        f"intsmooth tune {schedules / 'conv.onnx'} --sigma 0.25 --calib "
        f"{schedules / 'calib.npz'} --target {TARGET} --batch 4 --trials 1000"
    )
    assert f"  {command}\n" in err  # the whole command: not the artifact's -o as the database's


def test_explicit_database_must_exist(smoothed, tmp_path):
    with pytest.raises(IntSmoothError, match="database_workload.json"):
        load_database(tmp_path)
    with pytest.raises(IntSmoothError, match="not found"):
        build(smoothed.mod, TARGET, schedules=tmp_path)
