"""TVM RPC: an emulated Raspberry Pi (qemu-user), ARM counts equal to x86, tracker sharding, faults.

The emulated Pis run the aarch64 builds of the rpi4 and rpi5 targets; their vote counts must equal
the x86 build's bit for bit (every operation is integer). The emulator's cache (arm64 Debian root
and aarch64 TVM wheels, ~150 MB of downloads) is the user's, prepared here when missing, so that
CI prepares it once. Everything started here (emulators, trackers, servers, CLI runs) runs in its
own process group and is killed in the fixtures' teardown.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tvm
from conftest import random_images
from onnx_models import conv_model, ort_qdq_model
from rpc_servers import free_port, process_group, rpc_tracker

from tvm_intsmooth.assets import ASSETS
from tvm_intsmooth.data import load_npz, save_npz
from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.pipeline.smooth import smooth
from tvm_intsmooth.remote import (
    Device,
    EmulatedPi,
    benchmark,
    device_report,
    emulator_cache,
    load_artifact,
)
from tvm_intsmooth.remote.emulated_pi import listener_path
from tvm_intsmooth.runtime import SmoothedClassifier, save_artifact

pytestmark = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in emulator_cache.TOOLS),
    reason="the emulated Pi needs qemu-user-static and debootstrap: run .ci/install",
)
RESNET20 = ASSETS / "models" / "fashion_mnist32_resnet20_sigma025.onnx"
QDQ_SHAPE = (1, 12, 12)
SEED = 0x5EED_0F_A5C4
TARGETS = ("host", "rpi4", "rpi5")


@contextlib.contextmanager
def x86_server():
    """The RPC listener on this machine's Python: a local x86 TVM RPC server."""
    port = free_port()
    cmd = [sys.executable, str(listener_path()), "--port", str(port)]
    with process_group(cmd, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout.readline().startswith("READY "), "the x86 RPC listener did not start"
        yield ("127.0.0.1", port)


def intsmooth(*args, timeout=600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "tvm_intsmooth.cli", *map(str, args)]
    with process_group(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The CLI's one-paragraph error: the last stderr line, without a traceback before it."""
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("intsmooth "), line
    return line


def rows(path: Path) -> list[list[str]]:
    """The rows of a RESULTS.tsv without the time column (the only one that may differ)."""
    lines = path.read_text().splitlines()
    return [line.split("\t")[:5] + line.split("\t")[6:] for line in lines]


@pytest.fixture(scope="module")
def cache():
    """The user's emulator cache, prepared once when missing (CI's first run downloads it)."""
    return emulator_cache.prepare(progress=print)


@pytest.fixture(scope="module")
def emulated(cache):
    """Three emulated Pis, started together: one direct, two under one key of a tracker."""
    with rpc_tracker() as (tracker, tracker_proc):
        pis = [EmulatedPi(free_port())]
        pis += [EmulatedPi(free_port(), tracker=tracker, key="rpi") for _ in range(2)]
        errors = []

        def start(pi):
            try:
                pi.start()
            except Exception as err:
                errors.append(err)

        threads = [threading.Thread(target=start, args=(pi,)) for pi in pis]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert not errors, errors
            yield {"pi": pis[0], "tracker": tracker, "tracker_pis": pis[1:]}
        finally:
            for pi in pis:
                pi.stop()


def build_all(model, folder: Path, name: str) -> dict:
    return {(name, t): save_artifact(model, folder / f"{name}-{t}", t) for t in TARGETS}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """An ONNX Runtime QDQ model (small: the certify tests use it), for x86, rpi4 and rpi5."""
    folder = tmp_path_factory.mktemp("qdq")
    model = ort_qdq_model(conv_model, QDQ_SHAPE, folder)
    # sigma 0.5: votes spread over classes, so equal counts are a strong check
    return build_all(
        smooth(model, random_images(QDQ_SHAPE, 32, seed=1), 0.5, batch=8), folder, "qdq"
    )


@pytest.fixture(scope="module")
def resnet_artifacts(tmp_path_factory):
    """The bundled ResNet-20 for x86, rpi4 and rpi5 (about a minute of compiling)."""
    x32, _ = load_npz(ASSETS / "data" / "fashion_mnist32_test500.npz")
    model = smooth(RESNET20, x32[:16], 0.5, batch=4)
    return build_all(model, tmp_path_factory.mktemp("resnet20"), "resnet20")


@pytest.fixture(scope="module")
def qdq_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "qdq.npz"
    save_npz(path, random_images(QDQ_SHAPE, 10, seed=9), np.arange(10) % 10)
    return path


def address(pi: EmulatedPi) -> str:
    return f"{pi.host}:{pi.port}"


# --- ARM counts equal x86 counts -----------------------------------------------------------


@pytest.mark.slow  # emulated Pis under qemu
@pytest.mark.parametrize("model", [pytest.param("resnet20", marks=pytest.mark.slow), "qdq"])
def test_rpi_builds_on_emulated_pi_count_like_x86(model, request, emulated):
    """rpi4 (NEON) and rpi5 (NEON + dotprod) libraries, run on the emulated aarch64 CPU over RPC,
    give the x86 build's vote counts bit for bit, on full and partial batches."""
    artifacts = request.getfixturevalue("resnet_artifacts" if model == "resnet20" else "artifacts")
    local = SmoothedClassifier.load(artifacts[model, "host"])
    images = random_images(local.input_shape, 2, seed=3)
    if model == "resnet20":
        x32, _ = load_npz(ASSETS / "data" / "fashion_mnist32_test500.npz")
        images = np.concatenate([x32[:2], images[:1]])
    session = Device.parse(rpc=address(emulated["pi"])).open()
    assert device_report(session)["machine"] == "aarch64"
    spread = False
    for target in ("rpi4", "rpi5"):
        remote = load_artifact(artifacts[model, target], session)
        for k, image in enumerate(images):
            for n, stream in ((2 * local.batch, 2 * k), (local.batch + 3, 2 * k + 1)):
                want = local.counts(image, n, SEED, stream)
                np.testing.assert_array_equal(remote.counts(image, n, SEED, stream), want)
                spread |= np.count_nonzero(want) > 1
    del remote, session  # end the session: the server serves one at a time
    gc.collect()
    assert spread, "every count vector is one class: the comparison would be too weak"


# --- bench ---------------------------------------------------------------------------------


@pytest.mark.slow  # emulated Pis under qemu
def test_bench_on_emulated_pi_says_emulated(artifacts, emulated):
    proc = intsmooth(
        "bench", artifacts["qdq", "rpi4"], "--rpc", address(emulated["pi"]), "--n", 8, "--repeat", 3
    )
    assert proc.returncode == 0, proc.stderr
    assert "[aarch64" in proc.stdout and "samples/s" in proc.stdout, proc.stdout
    assert "median" in proc.stdout and "p90" in proc.stdout
    assert "emulated (qemu-user)" in proc.stdout and "meaningless for speed" in proc.stdout


def test_bench_local_and_on_x86_server(artifacts):
    local = benchmark(artifacts["qdq", "host"], n=16, repeat=3)
    assert len(local.batch_seconds) == 3 and local.calls == 2 and local.samples_per_s > 0
    assert not local.emulated and "meaningless" not in local.summary()
    with x86_server() as server:
        remote = benchmark(artifacts["qdq", "host"], Device(rpc=server), n=8, repeat=2)
    assert remote.device["machine"] == "x86_64" and not remote.emulated
    assert remote.p90_s >= remote.median_s > 0


# --- certify over RPC and a tracker --------------------------------------------------------


def certify_args(artifact, data, out, *extra, max_images=10, n=512):
    """Certify with n = 512: 0.2-2 s per image on an emulated Pi (the machines differ), a blink
    on x86."""
    return [
        "certify", artifact, "--data", data, "--max-images", max_images, "--n0", 8, "--n", n,
        "--seed", SEED, "-o", out, *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def local_rows(artifacts, qdq_data, tmp_path_factory):
    """The x86 run that the remote runs must reproduce (10 images)."""
    out = tmp_path_factory.mktemp("local") / "local.tsv"
    proc = intsmooth(*certify_args(artifacts["qdq", "host"], qdq_data, out, max_images=10))
    assert proc.returncode == 0, proc.stderr
    return rows(out)


@pytest.mark.slow  # emulated Pis under qemu
def test_certify_rpc_matches_local(artifacts, qdq_data, emulated, local_rows, tmp_path):
    out = tmp_path / "rpc.tsv"
    pi = address(emulated["pi"])
    proc = intsmooth(
        *certify_args(artifacts["qdq", "rpi5"], qdq_data, out, "--rpc", pi, max_images=4)
    )
    assert proc.returncode == 0, proc.stderr
    assert rows(out) == local_rows[:5]
    assert json.loads(out.with_name("rpc.tsv.json").read_text())["seed"] == SEED


def test_certify_tracker_shards_and_matches_local(
    artifacts, qdq_data, emulated, local_rows, tmp_path
):
    out = tmp_path / "tracker.tsv"
    tracker = "{}:{}".format(*emulated["tracker"])
    args = certify_args(artifacts["qdq", "rpi4"], qdq_data, out, "--tracker", tracker, max_images=6)
    proc = intsmooth(*args, "--key", "rpi")
    assert proc.returncode == 0, proc.stderr
    assert rows(out) == local_rows[:7]


@pytest.mark.slow  # emulated Pis under qemu
def test_wrong_key_and_tracker_gone(artifacts, qdq_data, emulated, tmp_path):
    tracker = "{}:{}".format(*emulated["tracker"])
    out = tmp_path / "x.tsv"
    proc = intsmooth(*certify_args(artifacts["qdq", "rpi4"], qdq_data, out, "--tracker", tracker,
                                   "--key", "rpi3"))  # fmt: skip
    line = error_line(proc)
    assert "no server registered under the key 'rpi3'" in line and "'rpi'" in line, line

    with rpc_tracker() as (gone, proc):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        gone_error = r"no TVM RPC tracker at .*\(connection (refused|reset)"  # reset: still exiting
        with pytest.raises(IntSmoothError, match=gone_error):
            Device.parse(tracker="{}:{}".format(*gone), key="rpi").open()
        with pytest.raises(IntSmoothError, match="no TVM RPC tracker"):
            EmulatedPi(free_port(), tracker=gone, key="rpi", tracker_wait=2).start()


def run_and_strike(
    args, out: Path, strike, timeout=400, after: float = 0.0
) -> subprocess.CompletedProcess:
    """Run the CLI; call ``strike()`` ``after`` seconds after its first row is written; wait
    for it to end."""
    cmd = [sys.executable, "-m", "tvm_intsmooth.cli", *map(str, args)]
    with process_group(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        deadline = time.monotonic() + timeout
        while not (out.is_file() and len(out.read_text().splitlines()) >= 2):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no row within the timeout"
            time.sleep(0.2)
        time.sleep(after)
        strike()
        stdout, stderr = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


@pytest.mark.slow  # emulated Pis under qemu
def test_tracker_run_survives_a_hung_pi(artifacts, qdq_data, emulated, local_rows, tmp_path):
    """A Pi that stops answering (SIGSTOP) is dropped after --timeout; its image goes to the
    other Pi and no row is lost or changed."""
    out = tmp_path / "hung.tsv"
    hung = emulated["tracker_pis"][0]
    tracker = "{}:{}".format(*emulated["tracker"])
    args = certify_args(artifacts["qdq", "rpi4"], qdq_data, out, "--tracker", tracker)
    args += ["--key", "rpi", "--timeout", 20]
    try:
        proc = run_and_strike(args, out, lambda: hung.kill(signal.SIGSTOP))
    finally:
        hung.kill(signal.SIGCONT)
    assert proc.returncode == 0, proc.stderr
    assert "no answer within 20 s" in proc.stderr and "goes back" in proc.stderr, proc.stderr
    assert rows(out) == local_rows


@pytest.mark.slow  # emulated Pis under qemu
def test_tracker_run_survives_a_killed_pi(artifacts, qdq_data, emulated, local_rows, tmp_path):
    """Killing one of the two Pis mid-run loses nothing; killing the last one ends the run with
    a clear error and keeps every finished row."""
    out = tmp_path / "killed.tsv"
    first, second = emulated["tracker_pis"]
    tracker = "{}:{}".format(*emulated["tracker"])
    # n = 4096: an image takes 8x longer than in the other runs (1.6-16 s on an emulated Pi), so
    # that the Pi to kill is inside an image at the strike on any machine: both Pis finish
    # their first images close together, so at the first row it may be between two images,
    # holding none; 0.3 s later it holds its next one, which must go back.
    longer = {"max_images": 6, "n": 4096}
    local = tmp_path / "local.tsv"
    done = intsmooth(*certify_args(artifacts["qdq", "host"], qdq_data, local, **longer))
    assert done.returncode == 0, done.stderr
    args = certify_args(artifacts["qdq", "rpi4"], qdq_data, out, "--tracker", tracker, **longer)
    proc = run_and_strike(args + ["--key", "rpi"], out, first.kill, after=0.3)
    assert proc.returncode == 0, proc.stderr
    assert "dropped" in proc.stderr and "goes back" in proc.stderr, proc.stderr
    assert rows(out) == rows(local)

    out = tmp_path / "last.tsv"
    args = certify_args(artifacts["qdq", "rpi4"], qdq_data, out, "--tracker", tracker)
    proc = run_and_strike(args + ["--key", "rpi"], out, second.kill)
    line = error_line(proc)
    assert "no server of key 'rpi'" in line and "is left" in line, line
    done = rows(out)
    assert 2 <= len(done) < 11 and done == local_rows[: len(done)]


# --- faults --------------------------------------------------------------------------------


def test_connection_refused_is_one_clear_error(artifacts, qdq_data, tmp_path):
    port = free_port()
    with pytest.raises(IntSmoothError, match=f"no TVM RPC server at 127.0.0.1:{port}"):
        Device.parse(rpc=f"127.0.0.1:{port}").open()
    proc = intsmooth("bench", artifacts["qdq", "rpi4"], "--rpc", f"127.0.0.1:{port}")
    assert "connection refused" in error_line(proc)


def test_server_that_never_answers_times_out():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts connections (the kernel does), never answers
        port = listener.getsockname()[1]
        start = time.monotonic()
        with pytest.raises(IntSmoothError, match="did not answer within 2 s"):
            Device.parse(rpc=f"127.0.0.1:{port}", timeout=2).open()
        assert time.monotonic() - start < 10


@pytest.mark.slow  # emulated Pis under qemu
def test_library_for_another_architecture(artifacts, emulated):
    session = Device.parse(rpc=address(emulated["pi"])).open()
    with pytest.raises(IntSmoothError, match="built for x86_64, but .* is aarch64"):
        load_artifact(artifacts["qdq", "host"], session)
    with x86_server() as server, pytest.raises(IntSmoothError, match="built for aarch64"):
        load_artifact(artifacts["qdq", "rpi4"], Device(rpc=server).open())


# --- the emulator's cache ------------------------------------------------------------------


def fake_complete_cache(folder: Path) -> emulator_cache.EmulatorRoot:
    """A cache folder that looks complete (essential files and marker), without downloads."""
    emu = emulator_cache.EmulatorRoot(
        folder / emulator_cache.cache_tag(emulator_cache.wheel_versions())
    )
    for rel in emulator_cache.ESSENTIAL:
        (emu.folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (emu.folder / rel).write_bytes(b"x" * 10)
    digests = {rel: hashlib.sha256(b"x" * 10).hexdigest() for rel in emulator_cache.ESSENTIAL}
    emu.marker.write_text(json.dumps({"sha256": digests}))
    return emu


def test_cache_missing_or_corrupt(tmp_path):
    with pytest.raises(IntSmoothError, match="missing, was never completed"):
        emulator_cache.find_root(tmp_path / "empty")
    emu = fake_complete_cache(tmp_path / "cache")
    assert emulator_cache.find_root(tmp_path / "cache") == emu
    (emu.folder / emulator_cache.ESSENTIAL[0]).unlink()
    with pytest.raises(IntSmoothError, match=r"is corrupt: root/usr/bin/python3.11 is missing"):
        emulator_cache.prepare(tmp_path / "cache")
    (emu.folder / emulator_cache.ESSENTIAL[0]).write_bytes(b"x" * 3)
    proc = intsmooth("emulate-pi", "--port", free_port(), "--cache", tmp_path / "cache")
    assert "root/usr/bin/python3.11 is not the file prepared" in error_line(proc)


def test_cache_is_checked_by_content_not_size(tmp_path):
    """A library of the emulated root replaced by another of the same size is refused; a cache
    whose marker is of the older kind (sizes only) is not trusted but prepared again (here the
    mirror refuses connections, so preparing fails at once, after removing the old files)."""
    emu = fake_complete_cache(tmp_path)
    (emu.folder / "site/tvm/lib/libtvm_runtime.so").write_bytes(b"y" * 10)
    with pytest.raises(IntSmoothError, match="libtvm_runtime.so is not the file prepared"):
        emulator_cache.find_root(tmp_path)
    emu.marker.write_text(json.dumps({"files": {rel: 10 for rel in emulator_cache.ESSENTIAL}}))
    with pytest.raises(IntSmoothError, match="prepared by an earlier version"):
        emulator_cache.find_root(tmp_path)
    mirror = f"http://127.0.0.1:{free_port()}/debian"
    with pytest.raises(IntSmoothError, match="downloading the arm64 Debian packages"):
        emulator_cache.prepare(tmp_path, mirror=mirror)
    assert not emu.marker.exists() and not (emu.folder / "site/tvm/lib/libtvm_runtime.so").exists()


def test_half_prepared_cache_is_redone_and_download_failure_is_clear(tmp_path):
    """No completion marker: the leftovers are removed and preparation starts again (here it
    fails at once: the mirror refuses connections, which gives a clear error)."""
    emu = emulator_cache.EmulatorRoot(
        tmp_path / emulator_cache.cache_tag(emulator_cache.wheel_versions())
    )
    (emu.root / "usr").mkdir(parents=True)
    (emu.root / "usr" / "leftover").write_text("killed mid-download")
    mirror = f"http://127.0.0.1:{free_port()}/debian"
    proc = intsmooth("emulate-pi", "--port", free_port(), "--cache", tmp_path, "--mirror", mirror)
    line = error_line(proc)
    assert "downloading the arm64 Debian packages" in line and "network" in line, line
    assert not (emu.root / "usr" / "leftover").exists() and not emu.marker.exists()


def test_two_emulators_share_one_preparation(tmp_path):
    """While one process prepares the cache (holds its lock), another waits, then uses it."""
    emu = emulator_cache.EmulatorRoot(
        tmp_path / emulator_cache.cache_tag(emulator_cache.wheel_versions())
    )
    lines, result = [], []
    with open(tmp_path / f"{emu.folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        bad_mirror = f"http://127.0.0.1:{free_port()}/debian"  # only used if it did prepare
        waiter = threading.Thread(
            target=lambda: result.append(
                emulator_cache.prepare(tmp_path, mirror=bad_mirror, progress=lines.append)
            )
        )
        waiter.start()
        deadline = time.monotonic() + 30
        while not lines and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lines and "waiting for another process" in lines[0]
        assert waiter.is_alive()
        fake_complete_cache(tmp_path)  # what the other process's preparation leaves
    waiter.join(30)
    assert result == [emu]


@pytest.mark.slow  # a MetaSchedule build and run over RPC
def test_tune_runner_times_a_candidate_over_rpc():
    """MetaSchedule's RPC runner from --rpc (a direct server, no tracker) measures a kernel."""
    from tvm import te
    from tvm.s_tir import meta_schedule as ms

    from tvm_intsmooth.remote.tune_runner import rpc_runner

    a = te.placeholder((64,), "int32", name="a")
    func = te.create_prim_func([a, te.compute((64,), lambda i: a[i] + 1, name="b")])
    builder = ms.builder.LocalBuilder(timeout_sec=300)
    (built,) = builder.build(
        [ms.builder.BuilderInput(tvm.IRModule({"main": func}), tvm.target.Target("llvm"))]
    )
    assert built.error_msg is None, built.error_msg
    with x86_server() as server:
        runner = rpc_runner(Device(rpc=server))
        args_info = ms.arg_info.ArgInfo.from_prim_func(func)
        (future,) = runner.run([ms.runner.RunnerInput(built.artifact_path, "cpu", args_info)])
        result = future.result()
    assert result.error_msg is None, result.error_msg
    assert len(result.run_secs) >= 1 and all(float(s) > 0 for s in result.run_secs)
