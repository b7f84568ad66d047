"""An emulated Raspberry Pi: TVM's RPC server on aarch64 Debian under qemu-user, on 127.0.0.1.

    with EmulatedPi(port=9090) as pi:           # prepares the cache once, then ~20 s to start
        print(pi.report["machine"])             # 'aarch64'
        ...                                     # rpc.connect("127.0.0.1", 9090)

The server runs in its own process group; :meth:`EmulatedPi.stop` (and leaving the ``with``
block) ends the whole group: the emulated listener and the session it may be serving. The
speed of emulated code means nothing; its results are exactly those of a real aarch64 CPU.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from pathlib import Path

from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.remote.emulator_cache import DEBIAN_MIRROR, EmulatorRoot, Progress, prepare
from tvm_intsmooth.remote.rpc_listener import REMOTE_FLAG, is_loopback, remote_clients_refusal
from tvm_intsmooth.remote.session import wait_for_tracker

LISTENER_SCRIPT = str(Path(__file__).with_name("rpc_listener.py"))

START_TIMEOUT = 300.0  # `import tvm` alone takes 12-40 s under emulation on a busy machine
TRACKER_WAIT = 60.0  # as TVM's rpc_server, wait for a tracker that is not up yet


def check_port(port) -> int:
    """``port`` if it is a TCP port number (1..65535), else an IntSmoothError."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise IntSmoothError(f"port {port!r}: a TCP port is a number in 1..65535")
    return port


def check_port_free(host: str, port: int) -> None:
    """IntSmoothError when ``host:port`` cannot be listened on (busy, or not a valid port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            raise IntSmoothError(
                f"cannot serve on {host}:{port} ({err.strerror}): another program uses that "
                "port; choose another --port."
            ) from None


class EmulatedPi:
    """One emulated aarch64 TVM RPC server, direct on ``port`` or registered with a tracker.

    Args:
        port: the port to listen on.
        host: the address to listen on: a loopback address unless ``allow_remote`` (a TVM RPC
            server runs any code any client sends it).
        allow_remote: allow a ``host`` that other machines reach (a private network only).
        tracker: ``(host, port)`` of a TVM RPC tracker to register with, under ``key``; one
            that is not up yet is waited for ``tracker_wait`` seconds.
        key: the device key (required with ``tracker``).
        cache: the emulator's cache folder (default: :func:`default_cache_dir`).
        mirror: the Debian mirror used when the cache is prepared.
        progress: called with one line per preparation step.
        threads: TVM_NUM_THREADS of the emulated server (emulated threads only add overhead).
    """

    def __init__(
        self,
        port: int,
        *,
        host: str = "127.0.0.1",
        allow_remote: bool = False,
        tracker: tuple[str, int] | None = None,
        tracker_wait: float = TRACKER_WAIT,
        key: str = "",
        cache: str | os.PathLike | None = None,
        mirror: str = DEBIAN_MIRROR,
        progress: Progress | None = None,
        threads: int = 1,
    ):
        if tracker is not None and not key:
            raise IntSmoothError("an emulated Pi registered with a tracker needs a --key")
        if not allow_remote and not is_loopback(host):
            raise IntSmoothError(remote_clients_refusal(host))
        self.port = check_port(port)
        self.host, self.allow_remote = host, allow_remote
        self.tracker_wait = tracker_wait
        self.tracker = tracker
        self.key = key
        self.cache = cache
        self.mirror = mirror
        self.progress = progress
        self.threads = threads
        self.proc: subprocess.Popen | None = None
        self.report: dict | None = None
        self._stderr: deque[str] = deque(maxlen=20)

    def start(self, timeout: float = START_TIMEOUT) -> dict:
        """Prepare the cache if needed, start the server, wait until it serves; its report.
        The port and the tracker are checked first (no download for a busy port)."""
        check_port_free(self.host, self.port)
        if self.tracker is not None:
            wait_for_tracker(self.tracker, self.tracker_wait, self.progress)
        emu = prepare(self.cache, mirror=self.mirror, progress=self.progress)
        check_port_free(self.host, self.port)
        args = ["--host", self.host, "--port", str(self.port), "--emulator", "qemu-user"]
        if self.allow_remote:
            args.append(REMOTE_FLAG)
        if self.tracker is not None:
            args += ["--tracker", f"{self.tracker[0]}:{self.tracker[1]}", "--key", self.key]
        self.proc = subprocess.Popen(
            emu.command(LISTENER_SCRIPT, *args),
            env=emu.environment({"TVM_NUM_THREADS": str(self.threads)}),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: stop() ends all of it
        )
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        try:
            self.report = self._wait_ready(emu, timeout)
        except BaseException:
            self.stop()
            raise
        return self.report

    def _drain_stderr(self) -> None:
        for line in self.proc.stderr:
            self._stderr.append(line.rstrip())

    def _wait_ready(self, emu: EmulatorRoot, timeout: float) -> dict:
        lines: deque[str] = deque()
        reader = threading.Thread(target=lambda: lines.extend(self.proc.stdout), daemon=True)
        reader.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(lines):
                if line.startswith("READY "):
                    return json.loads(line[len("READY ") :])
            if self.proc.poll() is not None:
                reader.join(1)
                if any(line.startswith("READY ") for line in lines):
                    continue
                raise self._start_error(emu, f"it exited with status {self.proc.returncode}")
            time.sleep(0.1)
        raise self._start_error(emu, f"it did not answer within {timeout:.0f} s")

    def _start_error(self, emu: EmulatorRoot, what: str) -> IntSmoothError:
        time.sleep(0.2)  # let the stderr reader catch the last lines
        tail = " | ".join(list(self._stderr)[-4:]) or "no output"
        return IntSmoothError(
            f"the emulated Pi's RPC server on {self.host}:{self.port} failed to start: {what} "
            f"({tail}). If the emulator's cache {emu.folder} is damaged, remove it (or run "
            "`intsmooth emulate-pi --refresh`) to prepare it again."
        )

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the whole server process group (tests use it to simulate failures)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def stop(self, grace: float = 5.0) -> None:
        """End the server and every process it started (SIGTERM, then SIGKILL)."""
        if self.proc is None:
            return
        self.kill(signal.SIGCONT)  # a stopped group cannot act on SIGTERM
        self.kill(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(grace)
        self.kill(signal.SIGKILL)  # forked session children too, even when the leader is gone
        self.proc.wait()
        self.proc = None

    def __enter__(self) -> EmulatedPi:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_emulated_pi(pi: EmulatedPi, say: Progress = print) -> int:
    """Run ``pi`` in the foreground until SIGINT/SIGTERM or until it fails; tear it down."""
    stopping = []

    def on_signal(signum, frame):
        stopping.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        report = pi.start()
        where = f"{pi.host}:{pi.port}"
        if pi.tracker is not None:
            where += f", registered with the tracker {pi.tracker[0]}:{pi.tracker[1]} as {pi.key!r}"
        say(f"serving TVM RPC on {where}: {report['name']} (TVM {report['tvm']}); Ctrl-C stops")
        while not stopping and pi.running:
            time.sleep(0.2)
        if not stopping:
            tail = " | ".join(list(pi._stderr)[-4:]) or "no output"
            raise IntSmoothError(f"the emulated Pi's RPC server stopped by itself ({tail})")
        say("stopping the emulated Pi")
        return 0
    finally:
        pi.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def listener_path() -> Path:
    """The RPC listener script (run it on a real board: ``python3 rpc_listener.py --port P``)."""
    return Path(LISTENER_SCRIPT)
