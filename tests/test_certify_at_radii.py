"""Sequential certification at chosen radii, end to end: counts over sample ranges in every
classifier, ``certify(radii=...)`` identical for every batch size, thread count and device (this
machine, an x86 TVM RPC server, a tracker's servers), ``intsmooth certify --radii`` written,
read back, reported and resumed with identical rows. The statistics themselves are tested in
tests/test_certify_sequential.py and tests/test_sequential_soundness_audit.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import random_images
from onnx_models import conv_model

from tvm_intsmooth.certify import ABSTAIN, SequentialCertificate, read_results, sidecar_path
from tvm_intsmooth.certify.sequential import checkpoints
from tvm_intsmooth.data import save_npz
from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.pipeline.smooth import smooth
from tvm_intsmooth.runtime import FloatSmoothedClassifier, SmoothedClassifier, save_artifact
from tvm_intsmooth.runtime.smoothed_classifier import check_sample_count

SIGMA = 0.25
SHAPE = (1, 12, 12)
RADII = (0.25, 0.5)
N_MAX = 4000
SEED = 2**63 + 18
IMAGES = 6
LABELS = np.array([2, 2, 2, 1, 2, 0])  # the model votes 2 for most of these: some rows correct


@pytest.fixture(scope="module")
def images():
    return random_images(SHAPE, IMAGES, seed=3)


@pytest.fixture(scope="module")
def smoothed_by_batch():
    """batch -> SmoothedModel of the same model and calibration, built on demand."""
    calibration = random_images(SHAPE, 32, seed=1)
    cache = {}

    def get(batch: int):
        if batch not in cache:
            cache[batch] = smooth(conv_model(), calibration, SIGMA, batch=batch)
        return cache[batch]

    return get


@pytest.fixture(scope="module")
def classifier_by_batch(smoothed_by_batch):
    cache = {}

    def get(batch: int) -> SmoothedClassifier:
        if batch not in cache:
            cache[batch] = SmoothedClassifier.from_model(smoothed_by_batch(batch))
        return cache[batch]

    return get


@pytest.fixture(scope="module")
def artifact(smoothed_by_batch, tmp_path_factory):
    return save_artifact(smoothed_by_batch(100), tmp_path_factory.mktemp("artifact") / "conv")


@pytest.fixture(scope="module")
def data(images, tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "images.npz"
    save_npz(path, images, LABELS)
    return path


# --- counts over a sample range ------------------------------------------------------------


@pytest.mark.parametrize("batch", [7, 100])
def test_counts_of_a_range_are_differences_of_prefix_counts(classifier_by_batch, images, batch):
    clf = classifier_by_batch(batch)
    x, stream = images[0], 2**32 + 3

    def prefix(n: int) -> np.ndarray:
        return classifier_by_batch(100).counts(x, n, SEED, stream)

    for start, n in [(0, 250), (250, 250), (123, 200), (999, 1)]:
        got = clf.counts(x, n, SEED, stream, start=start)
        np.testing.assert_array_equal(
            got, prefix(start + n) - prefix(start) if start else prefix(n)
        )
        assert got.sum() == n


def test_float_counts_of_a_range_do_not_depend_on_batch_or_call_order(images):
    """The float reference's sample i is the i-th image-sized block of its normal stream: a
    range reached by continuing the previous call equals one drawn afresh, for any batch."""
    x = images[1]
    whole = FloatSmoothedClassifier(conv_model(), 0.5, batch=100).counts(x, 300, SEED, 7)
    for batch in (7, 100):
        clf = FloatSmoothedClassifier(conv_model(), 0.5, batch=batch)
        first = clf.counts(x, 120, SEED, 7)
        continued = clf.counts(x, 180, SEED, 7, start=120)  # the generator of the last call
        fresh = FloatSmoothedClassifier(conv_model(), 0.5, batch=batch).counts(
            x, 180, SEED, 7, start=120
        )  # samples 0..119 drawn and dropped
        np.testing.assert_array_equal(continued, fresh)
        np.testing.assert_array_equal(first + continued, whole)


def test_sample_ranges_stay_below_two_to_the_32():
    assert check_sample_count(100, 100, start=2**32 - 100) == 100
    assert check_sample_count(1, 100, start=2**32 - 100) == 1
    with pytest.raises(IntSmoothError, match="reach past sample index 2\\^32 - 1"):
        check_sample_count(1, 100, start=2**32 - 99)  # its batch would end past 2^32
    with pytest.raises(IntSmoothError, match="start must be an integer >= 0"):
        check_sample_count(10, 100, start=-1)


# --- the Python API -------------------------------------------------------------------------


def test_certify_at_radii_is_the_same_for_every_batch_size(classifier_by_batch, images):
    small, large = classifier_by_batch(16), classifier_by_batch(100)
    certificates = []
    for index, x in enumerate(images):
        a = small.certify(x, 50, alpha=0.001, index=index, seed=SEED, radii=RADII, n_max=N_MAX)
        b = large.certify(x, 50, alpha=0.001, index=index, seed=SEED, radii=RADII, n_max=N_MAX)
        assert isinstance(a, SequentialCertificate) and a == b
        assert a.n in checkpoints(N_MAX) and a.stopped
        # n_a is the guess's count among estimation samples 0..n-1 of stream 2 index + 1
        counts = large.counts(x, a.n, SEED, 2 * index + 1)
        guess = int(np.argmax(large.counts(x, 50, SEED, 2 * index)))
        assert a.n_a == counts[guess]
        certificates.append(a)
    assert {c.prediction == ABSTAIN for c in certificates} == {True, False}  # both kinds
    assert min(c.n for c in certificates) < N_MAX  # some stop early


def test_certify_arguments(classifier_by_batch, images):
    clf = classifier_by_batch(100)
    with pytest.raises(IntSmoothError, match="n = 1000 goes with fixed-n CERTIFY"):
        clf.certify(images[0], 50, 1000, seed=1, radii=RADII)
    with pytest.raises(IntSmoothError, match="n_max goes with radii"):
        clf.certify(images[0], 50, 1000, seed=1, n_max=2000)
    with pytest.raises(IntSmoothError, match="strictly increasing"):
        clf.certify(images[0], 50, seed=1, radii=(0.5, 0.25))
    fixed = clf.certify(images[2], 50, 1000, 0.001, index=2, seed=SEED)  # the default procedure
    assert not isinstance(fixed, SequentialCertificate) and fixed.n == 1000


# --- the command line -----------------------------------------------------------------------


def intsmooth_cli(*args, threads: int | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if threads is not None:
        env["TVM_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, "-m", "tvm_intsmooth.cli", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


def certify_args(artifact, data, out, *extra):
    return [
        "certify", artifact, "--data", data, "--n0", 50, "--radii", "0.25,0.5",
        "--n-max", N_MAX, "--seed", SEED, "-q", "-o", out, *extra,
    ]  # fmt: skip


def rows_without_time(path) -> list[list[str]]:
    lines = path.read_text().splitlines()
    return [line.split("\t")[:5] + line.split("\t")[6:] for line in lines]


@pytest.fixture(scope="module")
def cli_rows(artifact, data, tmp_path_factory):
    """One CLI run with one thread: the rows every other run must reproduce."""
    out = tmp_path_factory.mktemp("cli") / "seq.tsv"
    proc = intsmooth_cli(*certify_args(artifact, data, out), threads=1)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.slow
def test_cli_round_trip(cli_rows, artifact, classifier_by_batch, images):
    header, *rows = rows_without_time(cli_rows)
    assert header[-5:] == ["nA", "n", "decided", "pA_lower", "stop"]
    meta = json.loads(sidecar_path(cli_rows).read_text())
    assert meta["mode"] == "sequential" and meta["radii"] == list(RADII)
    assert meta["n_max"] == N_MAX and "n" not in meta and meta["seed"] == SEED
    results = read_results(cli_rows)  # every row checked against its sidecar
    assert [r.idx for r in results.rows] == list(range(IMAGES))
    clf = classifier_by_batch(100)
    for row in results.rows:  # the rows are the Python API's certificates
        cert = clf.certify(
            images[row.idx], 50, alpha=0.001, index=row.idx, seed=SEED, radii=RADII, n_max=N_MAX
        )
        assert (row.predict, row.decided, row.n_a, row.n) == (
            cert.prediction, cert.radius, cert.n_a, cert.n,
        )  # fmt: skip
        assert row.p_a_lower == cert.p_a_lower and row.stop == cert.stop_reason
        assert row.radius >= row.decided
    report = intsmooth_cli("report", cli_rows)
    assert report.returncode == 0, report.stderr
    first_words = [line.split()[0] for line in report.stdout.splitlines()[1:4]]
    assert first_words == ["0.25", "0.50", "inputs"]  # the listed radii, nothing else
    assert "mean n" in report.stdout and "max n" in report.stdout


@pytest.mark.slow
def test_cli_rows_do_not_depend_on_thread_count(cli_rows, artifact, data, tmp_path):
    out = tmp_path / "two_threads.tsv"
    proc = intsmooth_cli(*certify_args(artifact, data, out), threads=2)
    assert proc.returncode == 0, proc.stderr
    assert rows_without_time(out) == rows_without_time(cli_rows)


@pytest.mark.slow
def test_cli_rows_do_not_depend_on_batch_size(cli_rows, smoothed_by_batch, data, tmp_path):
    """The same model compiled for 16 samples per call instead of 100: the same rows."""
    artifact16 = save_artifact(smoothed_by_batch(16), tmp_path / "conv16")
    out = tmp_path / "batch16.tsv"
    proc = intsmooth_cli(*certify_args(artifact16, data, out))
    assert proc.returncode == 0, proc.stderr
    assert rows_without_time(out) == rows_without_time(cli_rows)


@pytest.mark.slow
def test_interrupted_run_resumes_with_identical_rows(cli_rows, artifact, data, tmp_path):
    """A run killed while certifying image 2 left rows 0 and 1 and half a line: the same
    command finishes it with the rows of an uninterrupted run."""
    out = tmp_path / "resumed.tsv"
    lines = cli_rows.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:3]) + lines[3][:17])
    sidecar_path(out).write_text(sidecar_path(cli_rows).read_text())
    proc = intsmooth_cli(*certify_args(artifact, data, out))
    assert proc.returncode == 0, proc.stderr
    assert "resuming" in proc.stdout and "2 rows already done" in proc.stdout
    assert rows_without_time(out) == rows_without_time(cli_rows)
    # a fixed-n run cannot resume it, nor can other radii
    for extra in (["--n", 1000], ["--radii", "0.25,0.75"]):
        args = certify_args(artifact, data, out)
        if extra[0] == "--n":
            args = [a for a in args if a not in ("--radii", "0.25,0.5", "--n-max", N_MAX)]
        proc = intsmooth_cli(*args, *extra)
        assert proc.returncode == 1 and "holds results of another run" in proc.stderr


@pytest.mark.slow
def test_float_reference_certifies_at_radii(artifact, data, images, tmp_path):
    out = tmp_path / "float.tsv"
    proc = intsmooth_cli(*certify_args(artifact, data, out, "--float"))
    assert proc.returncode == 0, proc.stderr
    results = read_results(out)
    assert results.metadata["noise"] == "gaussian_float32" and results.metadata["tv_bound"] == 0
    clf = FloatSmoothedClassifier.from_artifact(artifact)
    row = results.rows[2]
    cert = clf.certify(images[2], 50, index=2, seed=SEED, radii=RADII, n_max=N_MAX)
    assert (row.predict, row.decided, row.n_a, row.n) == (
        cert.prediction, cert.radius, cert.n_a, cert.n,
    )  # fmt: skip


def test_cli_argument_errors(data, tmp_path):
    """Refused before the artifact is even loaded (so none is needed here)."""
    artifact, out = tmp_path / "artifact", tmp_path / "x.tsv"
    proc = intsmooth_cli(*certify_args(artifact, data, out), "--n", 1000)
    assert proc.returncode == 1 and "--n 1000 goes with fixed-n CERTIFY" in proc.stderr
    assert "Traceback" not in proc.stderr
    base = ["certify", artifact, "--data", data, "-o", out]
    proc = intsmooth_cli(*base, "--n-max", 1000)
    assert proc.returncode == 1 and "--n-max goes with --radii" in proc.stderr
    proc = intsmooth_cli(*base, "--radii", "0.5,0.25")
    assert proc.returncode == 2 and "increasing order" in proc.stderr
    assert not out.exists()


@pytest.mark.slow
def test_damaged_sequential_rows_are_refused(cli_rows, tmp_path):
    header, first, *rest = cli_rows.read_text().splitlines(keepends=True)
    fields = first.rstrip("\n").split("\t")
    damaged = {
        "decided": fields[:8] + ["0.75"] + fields[9:],  # not what pA_lower decides
        "pA_lower": fields[:9] + ["1.0"] + fields[10:],  # above what nA and n allow
        "n": fields[:7] + ["3999"] + fields[8:],  # not a checkpoint
        "stop": fields[:10] + ["maybe"],
    }
    for name, bad in damaged.items():
        path = tmp_path / f"{name}.tsv"
        path.write_text(header + "\t".join(bad) + "\n" + "".join(rest))
        sidecar_path(path).write_text(sidecar_path(cli_rows).read_text())
        with pytest.raises(IntSmoothError, match=r"line 2: .*damaged"):
            read_results(path)
    # a sidecar of a fixed-n run does not go with the sequential columns
    meta = json.loads(sidecar_path(cli_rows).read_text())
    for key in ("mode", "radii", "n_max"):
        del meta[key]
    path = tmp_path / "fixed_sidecar.tsv"
    path.write_text(cli_rows.read_text())
    sidecar_path(path).write_text(json.dumps({**meta, "n": N_MAX}))
    with pytest.raises(IntSmoothError, match="does not match its sidecar"):
        read_results(path)


# --- over TVM RPC: one x86 server, and a tracker's servers ---------------------------------


@pytest.mark.slow
def test_rpc_rows_equal_local_rows(cli_rows, artifact, data, tmp_path):
    from test_remote import x86_server

    out = tmp_path / "rpc.tsv"
    with x86_server() as (host, port):
        proc = intsmooth_cli(*certify_args(artifact, data, out, "--rpc", f"{host}:{port}"))
    assert proc.returncode == 0, proc.stderr
    assert rows_without_time(out) == rows_without_time(cli_rows)


@pytest.mark.slow
def test_tracker_rows_equal_local_rows(cli_rows, artifact, data, tmp_path):
    """Two x86 servers under one key of TVM's tracker: the images are sharded over them, each
    worker runs the sequential procedure on its session, and the rows are the local ones."""
    from test_remote import free_port, process_group, rpc_tracker

    from tvm_intsmooth.remote.emulated_pi import listener_path

    out = tmp_path / "tracker.tsv"
    with rpc_tracker() as ((host, port), _), contextlib.ExitStack() as servers:
        for _ in range(2):
            cmd = [sys.executable, str(listener_path()), "--port", str(free_port())]
            cmd += ["--tracker", f"{host}:{port}", "--key", "x86"]
            proc = servers.enter_context(process_group(cmd, stdout=subprocess.PIPE, text=True))
            assert proc.stdout.readline().startswith("READY ")
        run = intsmooth_cli(
            *certify_args(artifact, data, out, "--tracker", f"{host}:{port}", "--key", "x86")
        )
    assert run.returncode == 0, run.stderr
    assert rows_without_time(out) == rows_without_time(cli_rows)
