"""A wheel built from this checkout carries what an installed copy needs: the bundled target
files (outside the package, under <prefix>/share), the bundled models and data, and its declared
dependencies are all that `intsmooth demo` imports."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLEAN_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # not this checkout

# The test venv's sitecustomize (it runs once every site directory is on sys.path): importing a
# top-level module of an installed distribution outside tvm_intsmooth's declared (non-extra)
# dependency closure fails, as it would after `pip install tvm_intsmooth` on a machine without
# it. The venv sees the system site-packages, so nothing is downloaded.
_DECLARED_ONLY = """
import importlib.abc, importlib.metadata as md, re, sys

def _closure(name):
    seen, todo = set(), [name]
    while todo:
        dist = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if dist in seen:
            continue
        seen.add(dist)
        for req in md.requires(dist) or []:
            if "extra ==" not in req:
                todo.append(re.match(r"[A-Za-z0-9_.-]+", req).group(0))
    return seen

_ALLOWED = _closure("tvm_intsmooth")
_OWNERS = {
    mod: {re.sub(r"[-_.]+", "-", d).lower() for d in dists}
    for mod, dists in md.packages_distributions().items()
}


class _DeclaredOnly(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        owners = _OWNERS.get(name.partition(".")[0])
        if owners and not owners & _ALLOWED:
            raise ModuleNotFoundError(f"{name}: not a declared dependency of tvm_intsmooth")
        return None

sys.meta_path.insert(0, _DeclaredOnly())
"""


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
    for database in (ROOT / "schedules").glob("*/*/*"):  # shipped tuned schedules
        assert f"{data}/data/share/tvm_intsmooth/{database.relative_to(ROOT).as_posix()}" in names
    package = ROOT / "tvm_intsmooth"
    for asset in (package / "assets").glob("*/*"):
        if asset.suffix in {".onnx", ".npz", ".json", ".md"}:
            assert asset.relative_to(ROOT).as_posix() in names


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A venv over the system site-packages with the wheel installed, its dependencies resolved
    offline (a declared dependency missing from this machine fails here)."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = venv / "bin" / "python"
    proc = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        env=CLEAN_ENV,
    )
    assert proc.returncode == 0, proc.stderr
    return venv


@pytest.mark.slow
def test_installed_copy_resolves_bundled_targets(venv, tmp_path):
    python = venv / "bin" / "python"
    probe = (
        "import tvm_intsmooth, sys;"
        "from tvm_intsmooth.schedule import list_targets, resolve_target;"
        "from tvm_intsmooth.schedule.targets import targets_dir;"
        "print(tvm_intsmooth.__file__); print(targets_dir()); print(' '.join(list_targets()));"
        "print(resolve_target('rpi5').num_cores)"
    )
    lines = subprocess.run(
        [python, "-c", probe],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=CLEAN_ENV,
    ).stdout.split("\n")
    assert lines[0].startswith(str(venv))  # the installed copy, not this checkout
    assert lines[1] == str(venv / "share" / "tvm_intsmooth" / "targets")
    assert lines[2].split() == ["rpi4", "rpi5", "x86-64", "x86-amx", "x86-avx2", "x86-vnni", "host"]
    assert lines[3] == "4"


@pytest.mark.slow
def test_demo_runs_on_declared_dependencies_only(venv, tmp_path):
    """`pip install .` then `intsmooth demo`: the float reference (onnxruntime) included, and
    nothing outside the declared dependencies (torch, statsmodels, ...) imported."""
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "sitecustomize.py").write_text(_DECLARED_ONLY)
    probe = subprocess.run(
        [venv / "bin" / "python", "-c", "import statsmodels"], capture_output=True, env=CLEAN_ENV
    )
    assert probe.returncode != 0, "the guard must refuse an undeclared distribution"
    args = ["demo", "--max-images", "2", "--n0", "10", "--n", "50", "--seed", "1", "-q"]
    proc = subprocess.run(
        [venv / "bin" / "intsmooth", *args, "-o", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=CLEAN_ENV,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("certify_integer.tsv", "certify_float.tsv", "certified_accuracy.png"):
        assert (tmp_path / "demo" / name).is_file(), name
