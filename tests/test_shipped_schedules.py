"""The shipped tuned databases (schedules/<target>/<key>/) still match the bundled models.

Each database's info.json records the `intsmooth tune` command that made it; compiling that model
with other calibration images and another sigma must still give the database's key (a database
serves the architecture, whatever the calibration), and the database must be the one the build
finds for the target without flags; where this CPU runs the target, the tuned build's vote
counts equal the untuned build's and the numpy integer interpreter's. A change to the graph
(layout, fusion) that orphans a database fails here instead of silently building untuned.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import tvm
from tvm import relax

from tvm_intsmooth.assets import ASSETS
from tvm_intsmooth.data import load_npz
from tvm_intsmooth.importer import import_onnx
from tvm_intsmooth.pipeline.build import build
from tvm_intsmooth.pipeline.phases import fused_module
from tvm_intsmooth.pipeline.smooth import smooth
from tvm_intsmooth.pipeline.tune import tunable_tasks
from tvm_intsmooth.runtime import SmoothedClassifier
from tvm_intsmooth.schedule.database import (
    ScheduleLookup,
    find_database,
    load_database,
    schedules_dir,
    workload_key,
)
from tvm_intsmooth.schedule.targets import host_can_run, resolve_target
from tvm_intsmooth.smoothing.reference import reference_counts

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "schedules").glob("*/*/info.json"))


def _option(words: list[str], name: str, default: str) -> str:
    return words[words.index(name) + 1] if name in words else default


def _bundled_smoothed(info_path: Path, sigma: float):
    """The database's bundled model, smoothed at ``sigma`` and calibrated on the bundled test
    images (not the tune command's training images), with the database's info and target."""
    info = json.loads(info_path.read_text())
    words = shlex.split(info["command"])
    assert words[:2] == ["intsmooth", "tune"]
    model = ROOT / words[2]
    spec = resolve_target(_option(words, "--target", "host"))
    batch = int(_option(words, "--batch", "100"))
    data = "fashion_mnist32_test500.npz" if "mnist32" in model.name else "fashion_mnist_test500.npz"
    images, _ = load_npz(ASSETS / "data" / data)
    smoothed = smooth(import_onnx(model), images[:100], sigma, batch=batch)
    return info, spec, smoothed, images


SHIPPED_IDS = {"ids": lambda p: f"{p.parent.parent.name}-{p.parent.name}"}


@pytest.mark.parametrize("info_path", SHIPPED, **SHIPPED_IDS)
def test_shipped_database_matches_its_bundled_model(info_path, monkeypatch, tmp_path):
    monkeypatch.setenv("INTSMOOTH_SCHEDULES", str(tmp_path))  # no database of the user's
    info, spec, smoothed, _ = _bundled_smoothed(info_path, sigma=0.12)
    fused = fused_module(smoothed.mod, spec)
    key = workload_key(fused)
    assert key == info["key"] == info_path.parent.name
    assert info_path.parent.parent == schedules_dir() / spec.resolved_name
    found = find_database(key, spec)
    assert found is not None and found.path == info_path.parent
    # Every kept kernel is a task of today's model, and has its record (a database may keep
    # none: then tuning found nothing faster than the fixed schedules, and compile says so).
    names = {task.task_name for task, _ in tunable_tasks(fused, spec)}
    assert {t["name"] for t in info["tasks"]} <= names
    kept = [t for t in info["tasks"] if t["kept"]]
    records = load_database(info_path.parent).database.get_all_tuning_records()
    assert len(records) == len(kept)


def _classifier(smoothed, spec, schedules) -> tuple[SmoothedClassifier, ScheduleLookup]:
    lookup = ScheduleLookup(spec, schedules)
    ex = build(smoothed.mod, spec, require_integer_only=True, schedules=lookup)
    return SmoothedClassifier(relax.VirtualMachine(ex, tvm.cpu()), smoothed.metadata()), lookup


@pytest.mark.slow
@pytest.mark.parametrize("info_path", SHIPPED, **SHIPPED_IDS)
def test_tuned_counts_equal_untuned_and_numpy(info_path, monkeypatch, tmp_path):
    monkeypatch.setenv("INTSMOOTH_SCHEDULES", str(tmp_path))  # no database of the user's
    name = info_path.parent.parent.name
    if not host_can_run(name):
        pytest.skip(f"this CPU lacks the instructions of {name}: its tuned kernels cannot run here")
    info, spec, smoothed, images = _bundled_smoothed(info_path, sigma=0.25)
    tuned, lookup = _classifier(smoothed, spec, "auto")
    assert lookup.used is not None and lookup.used.path == info_path.parent
    assert lookup.tuned_functions == len([t for t in info["tasks"] if t["kept"]])
    untuned, _ = _classifier(smoothed, spec, None)
    n = smoothed.batch
    for image, seed in ((images[0], 0), (images[1], 2**64 - 1)):
        counts = tuned.counts(image, 2 * n, seed)
        np.testing.assert_array_equal(counts, untuned.counts(image, 2 * n, seed))
        np.testing.assert_array_equal(
            tuned.counts(image, n, seed), reference_counts(smoothed, image, n, seed)
        )
