"""The intsmooth command starts fast and speaks plainly: no TVM (nor torch) behind --help and
report, --version, python -m tvm_intsmooth, exit status 1 for user errors and 2 for usage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tvm_intsmooth import __version__
from tvm_intsmooth.certify import ResultRow, ResultsWriter, certify_count

HEAVY = ("tvm", "tvm_ffi", "torch", "onnxruntime", "matplotlib")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tvm_intsmooth", *args], capture_output=True, text=True, timeout=120
    )


def heavy_modules_after(*argv: str, extra: tuple[str, ...] = ()) -> list[str]:
    code = (
        "import sys\n"
        "from tvm_intsmooth.cli.main import main\n"
        "try:\n"
        f"    main({list(argv)!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(sorted(m for m in {HEAVY + extra!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return eval(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "run.tsv"
    meta = {"seed": 1, "sigma": 0.25, "n0": 10, "n": 100, "alpha": 0.001, "tv_bound": 0.0}
    meta.update(noise="rounded_gaussian", target="host")
    with ResultsWriter(path, meta) as writer:
        writer.write(ResultRow.from_certificate(0, 3, certify_count(3, 100, 100, 0.25, 0.001), 0.5))
    return path


def test_help_loads_no_compiler():
    assert heavy_modules_after("--help") == []
    assert heavy_modules_after("--help", extra=("scipy",)) == []  # nor the statistics


def test_report_loads_no_compiler(results):
    assert heavy_modules_after("report", str(results)) == []


def test_version_and_python_m():
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"intsmooth {__version__}"
    proc = run_cli("--help")
    assert proc.returncode == 0 and "usage: intsmooth" in proc.stdout
    assert "-q, --quiet" in proc.stdout


def test_user_error_exits_1(tmp_path):
    proc = run_cli("report", str(tmp_path / "missing.tsv"))
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("intsmooth report: error:") and "Traceback" not in proc.stderr


def test_usage_error_exits_2():
    proc = run_cli("certify", "--n", "0")
    assert proc.returncode == 2 and "usage:" in proc.stderr


@pytest.mark.parametrize("argv", [["-q", "report", "x"], ["report", "x", "-q"], ["report", "x"]])
def test_quiet_before_or_after_the_command(argv):
    from tvm_intsmooth.cli.main import make_parser

    assert make_parser().parse_args(argv).quiet is ("-q" in argv)


@pytest.mark.parametrize(
    ("argv", "dest", "value"),
    [
        (["certify", "a", "--data", "d", "-o", "r.tsv", "--max", "3"], "max_images", 3),
        (["predict", "a", "--data", "d", "--max", "3"], "max_images", 3),
        (
            ["compile", "m", "--sigma", "1", "--calib", "d", "-o", "a", "--calib-max", "7"],
            "calib_images",
            7,
        ),
        (["tune", "m", "--sigma", "1", "--calib", "d", "--calib-max", "7"], "calib_images", 7),
        (["compile", "m", "--sigma", "1", "--calib", "d", "-o", "a"], "calib_images", 500),
    ],
)
def test_old_flag_spellings_are_aliases(argv, dest, value):
    from tvm_intsmooth.cli.main import make_parser

    assert getattr(make_parser().parse_args(argv), dest) == value


@pytest.mark.parametrize(
    ("command", "new", "old"),
    [("certify", "--max-images", "--max "), ("compile", "--calib-images", "--calib-max")],
)
def test_old_flag_spellings_are_not_in_the_help(command, new, old):
    proc = run_cli(command, "--help")
    assert proc.returncode == 0 and new in proc.stdout and old not in proc.stdout


def test_every_command_names_its_output_o():
    from tvm_intsmooth.cli.main import make_parser

    parser = make_parser()
    for argv in (
        ["demo"],
        ["quantize", "m", "--calib", "d"],
        ["tune", "m", "--sigma", "1", "--calib", "d"],
    ):
        assert parser.parse_args([*argv, "-o", "x"]).output == Path("x")
