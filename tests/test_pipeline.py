"""The registered "intsmooth" Relax pipeline: a TVM user's script, end to end.

A fresh interpreter does what a TVM user does (``import tvm_intsmooth, tvm``,
``relax.get_pipeline("intsmooth", ...)``, ``tvm.compile``) on the bundled CNN; its vote counts
must equal those of the artifact that ``intsmooth compile`` writes for the same calibration
images, for the same seeds and streams, and it must apply the same tuned database.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tvm_intsmooth.assets import DEMO_DATA, DEMO_MODEL
from tvm_intsmooth.cli.main import main
from tvm_intsmooth.data import load_npz
from tvm_intsmooth.pipeline import PHASES
from tvm_intsmooth.runtime import SmoothedClassifier

CALIB, BATCH, N = 100, 100, 300
SEEDS_STREAMS = [(7, 0), (2**63 + 1, 5)]

_SCRIPT = textwrap.dedent(
    f"""
    import json, sys
    import tvm_intsmooth
    assert "tvm" not in sys.modules  # importing the plugin first does not load TVM ...
    import tvm  # ... and "intsmooth" is registered when TVM loads
    from tvm import relax
    from tvm_intsmooth.data import load_npz

    assert "tvm_intsmooth.pipeline" not in sys.modules  # registered without loading it
    x, _ = load_npz({str(DEMO_DATA)!r})
    mod = tvm_intsmooth.import_onnx({str(DEMO_MODEL)!r}).mod
    calibration = tvm_intsmooth.calibrate(mod, x[:{CALIB}], sigma=0.25)  # before compiling
    pipeline = relax.get_pipeline(
        "intsmooth", sigma=0.25, calibration=calibration, batch={BATCH}, dump_ir=sys.argv[1]
    )
    table_k = pipeline.table.K  # the noise table is there before the pipeline runs
    from tvm_intsmooth.schedule.targets import resolve_target
    target = resolve_target("host").tvm_target  # a TVM Target: the bundled one it equals
    ex = tvm.compile(mod, target=target, relax_pipeline=pipeline)
    clf = tvm_intsmooth.SmoothedClassifier(relax.VirtualMachine(ex, tvm.cpu()), pipeline.metadata())
    counts = [clf.counts(x[i], {N}, seed, stream).tolist()
              for i in (0, 1) for seed, stream in {SEEDS_STREAMS}]
    print(json.dumps({{"counts": counts, "K": table_k, "tv_bound": pipeline.tv_bound,
                       "noise_tv": pipeline.noise.table.tv_bound(28 * 28),
                       "schedules": pipeline.schedules.summary()}}))
    """
)


@pytest.mark.slow
def test_registered_pipeline_gives_the_counts_of_intsmooth_compile(tmp_path):
    dumps = tmp_path / "ir"
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(dumps)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])

    artifact = tmp_path / "art"
    args = ["compile", str(DEMO_MODEL), "--sigma", "0.25", "--calib", str(DEMO_DATA)]
    args += ["--calib-images", str(CALIB), "--batch", str(BATCH), "-o", str(artifact)]
    assert main(args) == 0
    compiled = SmoothedClassifier.load(artifact)
    x, _ = load_npz(DEMO_DATA)
    expected = [
        compiled.counts(x[i], N, seed, stream).tolist()
        for i in (0, 1)
        for seed, stream in SEEDS_STREAMS
    ]
    assert result["counts"] == expected
    assert result["K"] == compiled.meta["K"]
    # the same tuned database (the shipped one for this CPU's target, where there is one)
    assert result["schedules"] == compiled.meta["schedules"]
    assert result["tv_bound"] == result["noise_tv"] == compiled.tv_bound
    assert sorted(p.name for p in dumps.iterdir()) == [
        f"{i:02d}_{name}.py" for i, name in enumerate(PHASES)
    ]
    assert "R.call_tir" in (dumps / _dump("inject_integer_noise")).read_text()
    assert np.sum(expected[0]) == N


def _dump(phase: str) -> str:
    return f"{PHASES.index(phase):02d}_{phase}.py"


def test_registered_when_tvm_is_imported_first():
    code = (
        "import tvm, tvm_intsmooth\n"
        "p = tvm.relax.get_pipeline('intsmooth', sigma=0.5, calibration=tvm_intsmooth.Calibration("
        "{}, 0.5))\n"
        "assert type(p).__name__ == 'IntSmoothPipeline' and p.table.sigma == 0.5\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_registering_twice_changes_nothing():
    """A second copy of the package (a reload) finds "intsmooth" registered and leaves it."""
    code = (
        "import importlib, tvm, tvm_intsmooth\n"
        "from tvm.relax.pipeline import PIPELINE_MAP\n"
        "first = PIPELINE_MAP['intsmooth']\n"
        "importlib.reload(tvm_intsmooth.registration).register()\n"
        "importlib.reload(tvm_intsmooth)\n"
        "assert PIPELINE_MAP['intsmooth'] is first\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_calibration_under_other_noise_is_refused():
    import tvm

    from tvm_intsmooth import Calibration
    from tvm_intsmooth.errors import IntSmoothError

    with pytest.raises(IntSmoothError, match="sigma=0.5.*sigma=0.25"):
        tvm.relax.get_pipeline("intsmooth", sigma=0.25, calibration=Calibration({}, 0.5))
    with pytest.raises(IntSmoothError, match="calibrate"):
        tvm.relax.get_pipeline("intsmooth", sigma=0.25, calibration=np.zeros((1, 1, 2, 2)))


def test_pipeline_needs_calibration():
    import tvm

    import tvm_intsmooth  # noqa: F401  (registers the pipeline)
    from tvm_intsmooth.errors import IntSmoothError

    with pytest.raises(IntSmoothError, match="calibration"):
        tvm.relax.get_pipeline("intsmooth", sigma=0.25)


def test_metadata_before_running_is_a_clear_error():
    import tvm

    from tvm_intsmooth import Calibration
    from tvm_intsmooth.errors import IntSmoothError

    pipeline = tvm.relax.get_pipeline("intsmooth", sigma=0.25, calibration=Calibration({}, 0.25))
    with pytest.raises(IntSmoothError, match="not run yet"):
        pipeline.metadata()


def test_the_passes_stand_without_the_pipeline():
    """The passes are usable in any TVM pipeline: importing them loads no composer."""
    code = (
        "import sys, tvm_intsmooth.transform;"
        "assert 'tvm_intsmooth.pipeline' not in sys.modules, 'the passes import the pipeline'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_smooth_and_build_dump_the_composer_phases(tmp_path):
    """smooth() and build() run the phases of pipeline.phases and dump them under its names: the
    registered pipeline's dumps (above) and these are the same files."""
    from onnx_models import residual_model

    import tvm_intsmooth as tis

    images = np.random.default_rng(0).integers(0, 256, (16, 3, 10, 10), dtype=np.uint8)
    smoothed = tis.smooth(residual_model(), images, 0.25, batch=4, dump_ir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"{i:02d}_{name}.py" for i, name in enumerate(PHASES[: PHASES.index("artifact_facts") + 1])
    ]
    tis.build(smoothed.mod, "host", dump_ir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"{i:02d}_{name}.py" for i, name in enumerate(PHASES)
    ]
    assert "intsmooth_facts" in (tmp_path / _dump("artifact_facts")).read_text()
    assert "T.parallel" in (tmp_path / _dump("kernel_schedules")).read_text()


def test_intsmooth_compile_dumps_the_composer_phases(tmp_path):
    args = ["compile", str(DEMO_MODEL), "--sigma", "0.25", "--calib", str(DEMO_DATA)]
    args += ["--calib-images", "20", "--batch", "10", "-o", str(tmp_path / "art")]
    assert main([*args, "--dump-ir", str(tmp_path / "ir")]) == 0
    assert sorted(p.name for p in (tmp_path / "ir").iterdir()) == [
        f"{i:02d}_{name}.py" for i, name in enumerate(PHASES)
    ]
