"""A wheel built from this checkout carries what an installed copy needs: the bundled target
files (outside the package, under <prefix>/share) and the bundled models and data."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        cwd=build,
    )
    (found,) = out.glob("tvm_intsmooth-*.whl")
    return found


@pytest.mark.slow
def test_wheel_has_targets_and_assets(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    data = next(n.split("/")[0] for n in names if ".data/" in n)
    for target in (ROOT / "targets").glob("*.json"):
        assert f"{data}/data/share/tvm_intsmooth/targets/{target.name}" in names
    package = ROOT / "tvm_intsmooth"
    for asset in (package / "assets").glob("*/*"):
        if asset.suffix in {".onnx", ".npz", ".json", ".md"}:
            assert asset.relative_to(ROOT).as_posix() in names


@pytest.mark.slow
def test_installed_copy_resolves_bundled_targets(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
    )
    probe = (
        "import tvm_intsmooth, sys;"
        "from tvm_intsmooth.schedule import list_targets, resolve_target;"
        "from tvm_intsmooth.schedule.targets import targets_dir;"
        "print(tvm_intsmooth.__file__); print(targets_dir()); print(' '.join(list_targets()));"
        "print(resolve_target('rpi5').num_cores)"
    )
    lines = subprocess.run(
        [python, "-c", probe], check=True, capture_output=True, text=True, cwd=tmp_path
    ).stdout.split("\n")
    assert lines[0].startswith(str(venv))  # the installed copy, not this checkout
    assert lines[1] == str(venv / "share" / "tvm_intsmooth" / "targets")
    assert lines[2].split() == ["rpi4", "rpi5", "x86-64", "x86-avx2", "x86-vnni", "host"]
    assert lines[3] == "4"
