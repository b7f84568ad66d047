"""The intsmooth command line: results, resumption, and one-paragraph errors for bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import onnx
import pytest
from onnx_models import GraphBuilder, conv_model

from tvm_intsmooth.certify import read_results
from tvm_intsmooth.data import save_npz


def intsmooth(*args, check=False) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "tvm_intsmooth.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def assert_user_error(proc, *words):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    message = proc.stderr.strip()
    assert message.startswith("intsmooth") and "\n" not in message.strip(), message
    for word in words:
        assert word in message, message


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A small model, 12x12 data, and its compiled smoothed artifact."""
    root = tmp_path_factory.mktemp("cli")
    onnx.save(conv_model(), root / "conv.onnx")
    rng = np.random.default_rng(0)
    save_npz(
        root / "data.npz",
        rng.integers(0, 256, (6, 1, 12, 12), dtype=np.uint8),
        rng.integers(0, 10, 6),
    )
    save_npz(
        root / "wrong.npz",
        rng.integers(0, 256, (3, 1, 8, 8), dtype=np.uint8),
        np.zeros(3, np.int64),
    )
    intsmooth(
        "compile",
        root / "conv.onnx",
        "--sigma",
        "0.25",
        "--calib",
        root / "data.npz",
        "--batch",
        "50",
        "-o",
        root / "art",
        check=True,
    )
    return root


def test_quantize_reports_agreement(workspace, tmp_path):
    proc = intsmooth(
        "quantize",
        workspace / "conv.onnx",
        "--calib",
        workspace / "data.npz",
        "-o",
        tmp_path / "q.zip",
        check=True,
    )
    assert "top-1 agreement float vs integer" in proc.stdout
    assert (tmp_path / "q.zip").stat().st_size > 0


def test_quantize_unsupported_ops_one_paragraph(tmp_path):
    g = GraphBuilder((1, 8, 8))
    x = g.relu(g.conv("input", 4))
    x = g.node("Softsign", [x], g.shapes[x])  # Sigmoid has an integer table since issue 19
    x = g.node("LRN", [x], g.shapes[x], size=3)
    onnx.save(g.build(g.gemm(g.flatten(x), 3)), tmp_path / "bad.onnx")
    save_npz(tmp_path / "d.npz", np.zeros((2, 1, 8, 8), np.uint8), np.zeros(2, np.int64))
    proc = intsmooth(
        "quantize", tmp_path / "bad.onnx", "--calib", tmp_path / "d.npz", "-o", tmp_path / "out.zip"
    )
    assert_user_error(proc, "Softsign", "LRN", "bad.onnx")
    assert not (tmp_path / "out.zip").exists()


CERTIFY = ["--n0", "20", "--n", "200", "--alpha", "0.01", "--seed", "77"]
# Enough samples per image that the run can be killed between rows on a fast machine.
SLOW_CERTIFY = ["--n0", "20", "--n", "5000", "--alpha", "0.01", "--seed", "77"]


def test_certify_resumes_after_kill(workspace, tmp_path):
    data = ["--data", workspace / "data.npz"]
    full = tmp_path / "full.tsv"
    intsmooth("certify", workspace / "art", *data, *SLOW_CERTIFY, "-o", full, check=True)
    killed = tmp_path / "killed.tsv"
    cmd = [
        sys.executable,
        "-m",
        "tvm_intsmooth.cli",
        "certify",
        str(workspace / "art"),
        *map(str, data),
        *SLOW_CERTIFY,
        "-o",
        str(killed),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if killed.exists() and len(killed.read_text().splitlines()) >= 2:  # header + 1 row
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(killed.read_text().splitlines()) - 1
    assert 1 <= done_before < 6
    proc = intsmooth(
        "certify", workspace / "art", *data, *SLOW_CERTIFY[:-2], "-o", killed, check=True
    )
    assert "resuming" in proc.stdout

    def rows(path):
        return [
            (r.idx, r.label, r.predict, r.radius, r.correct, r.n_a, r.n)
            for r in read_results(path).rows
        ]

    assert rows(killed) == rows(full)
    report = intsmooth("report", full, killed, check=True)
    assert "0.00" in report.stdout


def test_float_reference_certifies(workspace, tmp_path):
    out = tmp_path / "float.tsv"
    intsmooth(
        "certify",
        workspace / "art",
        "--float",
        "--data",
        workspace / "data.npz",
        *CERTIFY,
        "-o",
        out,
        check=True,
    )
    results = read_results(out)
    assert len(results.rows) == 6 and results.metadata["noise"] == "gaussian_float32"


@pytest.mark.parametrize(
    "args,words",
    [
        (["certify", "missing_artifact", "--data", "{data}", "-o", "{out}"], ["missing_artifact"]),
        (["certify", "{art}", "--data", "{wrong}", "-o", "{out}"], ["8 x 8", "12 x 12"]),
        (["predict", "{art}", "--data", "{data}", "--n", "10", "--alpha", "1.5"], ["alpha"]),
        (["certify", "{art}", "--data", "{data}", "--n0", "0", "-o", "{out}"], ["n0"]),
        (["report", "{corrupt}"], ["corrupt.tsv"]),
    ],
)
def test_bad_input_is_one_line(workspace, tmp_path, args, words):
    corrupt = tmp_path / "corrupt.tsv"
    corrupt.write_text("idx\tlabel\tpredict\nthis is not a results file\n")
    names = {
        "data": workspace / "data.npz",
        "wrong": workspace / "wrong.npz",
        "art": workspace / "art",
        "out": tmp_path / "r.tsv",
        "corrupt": corrupt,
    }
    proc = intsmooth(*[a.format(**names) for a in args])
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]  # argparse prints its usage above
    assert last.startswith("intsmooth") and "error:" in last, proc.stderr
    for word in words:
        assert word in last, proc.stderr


def test_report_into_a_closed_pipe_stops_quietly(tmp_path):
    """`intsmooth report ... | head -1`: the reader goes away, the command stops without a
    traceback and with the shell's SIGPIPE status."""
    tsv = tmp_path / "r.tsv"
    tsv.write_text(
        "idx\tlabel\tpredict\tradius\tcorrect\ttime\tnA\tn\n0\t1\t1\t0.5\t1\t0:00:01\t99\t100\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "tvm_intsmooth.cli", "report", str(tsv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # before the command has written anything
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, stderr
    assert "Traceback" not in stderr, stderr
