"""TVM RPC trackers and x86 servers on 127.0.0.1 for tests, each in its own process group and
killed with all its children when its ``with`` block ends."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tvm_intsmooth.remote.emulated_pi import listener_path

TAMPERING_SERVER = Path(__file__).with_name("tampering_rpc_server.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{proc.args} exited with {proc.returncode}"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


@contextlib.contextmanager
def process_group(cmd: list[str], **kwargs):
    """A subprocess in its own process group, killed with all its children on exit."""
    proc = subprocess.Popen(cmd, start_new_session=True, **kwargs)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def rpc_tracker():
    """TVM's own tracker (``python -m tvm.exec.rpc_tracker``) on a free port."""
    port = free_port()
    cmd = [sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--port-end", str(port + 1), "--silent"]
    with process_group(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        wait_for_port(port, proc)
        yield ("127.0.0.1", port), proc


@contextlib.contextmanager
def x86_server(tracker: tuple[str, int] | None = None, key: str = "", forged: Path | None = None):
    """The RPC listener on this machine's Python (a local x86 TVM RPC server), registered with
    ``tracker`` under ``key`` when given; with ``forged``, the tampering server that loads that
    library whatever the client uploads. Yields its address."""
    port = free_port()
    script = [str(listener_path())] if forged is None else [str(TAMPERING_SERVER), str(forged)]
    cmd = [sys.executable, *script, "--port", str(port)]
    if tracker is not None:
        cmd += ["--tracker", f"{tracker[0]}:{tracker[1]}", "--key", key]
    with process_group(cmd, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout.readline().startswith("READY "), "the x86 RPC listener did not start"
        yield ("127.0.0.1", port)


def intsmooth(*args, timeout=600) -> subprocess.CompletedProcess:
    """``intsmooth ARGS`` in its own process group."""
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
