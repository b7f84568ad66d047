"""Every tutorial runs, with small n, so that none of them rots. Each one is a script a user runs
as `python tutorials/NN_name.py`; here it runs the same way with INTSMOOTH_TUTORIAL_SMALL=1."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"

# Each tutorial and words its output must contain.
EXPECTED = {
    "01_quickstart.py": ["$ intsmooth report", "abstained"],
    "02_your_own_model.py": ["ONNX file: label", "QDQ ONNX: label", "PyTorch: label"],
    "03_raspberry_pi.py": ["ELF for AArch64", "certificates equal the host's", "meaningless"],
    "04_tuning.py": ["tuned schedules:", "samples/s", "tuned and untuned votes are equal"],
    "05_passes_in_your_pipeline.py": ["certified L2 radius", "registered pipeline: prediction"],
    "06_reading_a_certificate.py": ["radius = 0.25 * Phi^-1", "same seed: same certificate"],
}


def test_every_tutorial_is_run_here():
    assert sorted(p.name for p in TUTORIALS.glob("[0-9][0-9]_*.py")) == sorted(EXPECTED)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_tutorial_runs(name, tmp_path):
    if name == "03_raspberry_pi.py" and shutil.which("aarch64-linux-gnu-gcc") is None:
        pytest.skip("no aarch64-linux-gnu-gcc (apt-get install gcc-aarch64-linux-gnu)")
    if name == "03_raspberry_pi.py" and shutil.which("qemu-aarch64-static") is None:
        pytest.skip("no emulated Pi: apt-get install qemu-user-static debootstrap (.ci/install)")
    if name == "02_your_own_model.py":
        pytest.importorskip("torch")
    env = {
        **os.environ,
        "INTSMOOTH_TUTORIAL_SMALL": "1",
        "INTSMOOTH_TUTORIAL_OUT": str(tmp_path),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run(
        [sys.executable, str(TUTORIALS / name)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    for words in EXPECTED[name]:
        assert words in proc.stdout, proc.stdout[-3000:]
