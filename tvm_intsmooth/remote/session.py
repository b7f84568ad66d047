"""Connecting to TVM RPC servers, directly or through TVM's RPC tracker, with clear errors.

A :class:`Device` names where work runs: ``Device.parse(rpc="HOST:PORT")`` (one server),
``Device.parse(tracker="HOST:PORT", key="rpi5")`` (any free server registered under a key) or
``Device()`` (this machine). :meth:`Device.open` returns a TVM ``RPCSession`` after checking
that the server or tracker answers at all: TVM's own client waits a minute on a refused tracker
and forever on a server that accepted the connection but never answers.
:func:`load_artifact` runs an artifact on a session's device.
"""

from __future__ import annotations

import hashlib
import json
import socket
import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.remote.rpc_listener import REPORT_FUNCTION

if TYPE_CHECKING:
    from tvm_intsmooth.runtime import SmoothedClassifier

CONNECT_TIMEOUT = 60.0
# ELF e_machine values of the architectures TVM targets on CPUs.
ELF_MACHINES = {0x03: "i686", 0x28: "arm", 0x3E: "x86_64", 0xB7: "aarch64", 0xF3: "riscv64"}
_RPC_MAGIC = 0xFF271
_RPC_TRACKER_MAGIC = 0x2F271
_RPC_CODES = {_RPC_MAGIC, _RPC_MAGIC + 1, _RPC_MAGIC + 2}  # success, duplicate, key mismatch


def parse_address(text: str, option: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port), or IntSmoothError naming ``option``."""
    host, sep, port = str(text).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise IntSmoothError(f"{option} {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9190")
    return host, int(port)


def _handshake(addr: tuple[str, int], what: str, hint: str, send: bytes, timeout: float) -> int:
    """Connect, send ``send``, read one int32 back; clear errors for every way it can fail."""
    where = f"{addr[0]}:{addr[1]}"
    try:
        with socket.create_connection(addr, timeout=timeout) as sock:
            sock.sendall(send)
            reply = b""
            while len(reply) < 4:
                chunk = sock.recv(4 - len(reply))
                if not chunk:
                    break
                reply += chunk
    except ConnectionRefusedError:
        raise IntSmoothError(f"no {what} at {where} (connection refused): {hint}") from None
    except ConnectionResetError:  # a process that exits while a connection is queued
        raise IntSmoothError(
            f"no {what} at {where} (connection reset: what listened there closed it at once; "
            f"it may have just stopped): {hint}"
        ) from None
    except TimeoutError:
        raise IntSmoothError(
            f"the {what} at {where} did not answer within {timeout:.0f} s: it is hung, or busy "
            "serving another client (a TVM RPC server serves one session at a time). "
            f"Check it, or {hint}"
        ) from None
    except OSError as err:
        raise IntSmoothError(f"cannot reach the {what} at {where} ({err}): {hint}") from None
    if len(reply) < 4:
        raise IntSmoothError(f"the {what} at {where} closed the connection at once: {hint}")
    return struct.unpack("<i", reply)[0]


def check_server(addr: tuple[str, int], timeout: float = CONNECT_TIMEOUT) -> None:
    """IntSmoothError unless a TVM RPC server answers at ``addr`` (a probe with a wrong key,
    which the server refuses without starting a session)."""
    key = b"client:intsmooth-probe"
    hint = (
        "start one there (`intsmooth emulate-pi --port PORT`, or `python -m tvm.exec.rpc_server "
        "--port PORT` on the board) or fix --rpc."
    )
    code = _handshake(
        addr,
        "TVM RPC server",
        hint,
        struct.pack("<ii", _RPC_MAGIC, len(key)) + key,
        timeout,
    )
    if code not in _RPC_CODES:
        raise IntSmoothError(
            f"{addr[0]}:{addr[1]} answered, but not as a TVM RPC server (a tracker? then use "
            "--tracker and --key): " + hint
        )


def check_tracker(addr: tuple[str, int], timeout: float = CONNECT_TIMEOUT) -> None:
    """IntSmoothError unless a TVM RPC tracker answers at ``addr``."""
    hint = (
        "start one (`python -m tvm.exec.rpc_tracker --host HOST --port PORT`) and register "
        "servers with it, or fix --tracker."
    )
    send = struct.pack("<i", _RPC_TRACKER_MAGIC)
    if _handshake(addr, "TVM RPC tracker", hint, send, timeout) != _RPC_TRACKER_MAGIC:
        raise IntSmoothError(
            f"{addr[0]}:{addr[1]} answered, but not as a TVM RPC tracker (a server? then use "
            f"--rpc): {hint}"
        )


def wait_for_tracker(
    addr: tuple[str, int], timeout: float, say: Callable[[str], None] | None = None
) -> None:
    """Wait up to ``timeout`` seconds for a TVM RPC tracker to listen at ``addr`` (it may be
    starting), then check that it is one; IntSmoothError when none comes."""
    deadline = time.monotonic() + timeout
    told = False
    while True:
        try:
            socket.create_connection(addr, timeout=5).close()
            break
        except OSError as err:
            if time.monotonic() >= deadline:
                raise IntSmoothError(
                    f"no TVM RPC tracker at {addr[0]}:{addr[1]} after waiting {timeout:.0f} s "
                    f"({err.strerror or err}): start it (`python -m tvm.exec.rpc_tracker --host "
                    f"{addr[0]} --port {addr[1]}`), or fix --tracker."
                ) from None
            if say is not None and not told:
                say(f"waiting for the TVM RPC tracker at {addr[0]}:{addr[1]} ({timeout:.0f} s)")
                told = True
            time.sleep(1.0)
    check_tracker(addr, timeout=max(5.0, deadline - time.monotonic()))


def tracker_servers(addr: tuple[str, int], key: str, timeout: float = CONNECT_TIMEOUT) -> int:
    """How many servers are free under ``key`` at the tracker; IntSmoothError when none is
    registered under it (naming the keys that are)."""
    from tvm import rpc

    check_tracker(addr, timeout)
    tracker = rpc.connect_tracker(*addr)
    try:
        summary = tracker.summary()
    finally:
        tracker.close()
    keys = sorted({s["key"].split(":", 1)[1] for s in summary["server_info"] if ":" in s["key"]})
    total = sum(s["key"] == f"server:{key}" for s in summary["server_info"])
    if total == 0:
        known = ", ".join(repr(k) for k in keys) or "none"
        raise IntSmoothError(
            f"the tracker at {addr[0]}:{addr[1]} has no server registered under the key {key!r} "
            f"(keys with servers: {known}). Start servers with `--tracker {addr[0]}:{addr[1]} "
            f"--key {key}` (intsmooth emulate-pi, or TVM's rpc_server on the board), or fix --key."
        )
    return int(summary["queue_info"].get(key, {}).get("free", 0))


@dataclass(frozen=True)
class Device:
    """Where to run: this machine, one RPC server, or any free server of a tracker's key."""

    rpc: tuple[str, int] | None = None
    tracker: tuple[str, int] | None = None
    key: str | None = None
    timeout: float = CONNECT_TIMEOUT

    @classmethod
    def parse(
        cls,
        rpc: str | None = None,
        tracker: str | None = None,
        key: str | None = None,
        timeout: float = CONNECT_TIMEOUT,
    ) -> Device:
        """From the command-line forms ``--rpc HOST:PORT`` or ``--tracker HOST:PORT --key K``."""
        if rpc and tracker:
            raise IntSmoothError("give either --rpc HOST:PORT or --tracker HOST:PORT, not both")
        if tracker and not key:
            raise IntSmoothError("--tracker needs --key (the device key servers registered with)")
        if key and not tracker:
            raise IntSmoothError("--key goes with --tracker HOST:PORT")
        return cls(
            parse_address(rpc, "--rpc") if rpc else None,
            parse_address(tracker, "--tracker") if tracker else None,
            key,
            timeout,
        )

    @property
    def is_local(self) -> bool:
        """True for this machine (no --rpc, no --tracker)."""
        return self.rpc is None and self.tracker is None

    def __str__(self) -> str:
        if self.rpc is not None:
            return f"the RPC server {self.rpc[0]}:{self.rpc[1]}"
        if self.tracker is not None:
            return f"key {self.key!r} of the tracker {self.tracker[0]}:{self.tracker[1]}"
        return "this machine"

    def open(self):
        """A new TVM RPCSession on this device (for a tracker: a free server under the key,
        waiting at most ``timeout`` seconds for one to become free). The server's address is
        :func:`session_address` of it."""
        from tvm import rpc
        from tvm.rpc import base

        if self.rpc is not None:
            check_server(self.rpc, self.timeout)
            try:
                session = rpc.connect(*self.rpc)
            except Exception as err:  # TVM raises RPCError, RuntimeError, TVMError...
                raise IntSmoothError(f"connecting to {self} failed: {_first_line(err)}") from None
            session.intsmooth_address = self.rpc
            return session
        if self.tracker is None:
            raise IntSmoothError("Device.open: this machine needs no RPC session")
        tracker_servers(self.tracker, self.key, self.timeout)
        tracker = rpc.connect_tracker(*self.tracker)
        tracker._sock.settimeout(self.timeout)  # TVM waits forever for a free server
        try:
            # TrackerSession.request, keeping the address the tracker hands out
            base.sendjson(tracker._sock, [base.TrackerCode.REQUEST, self.key, "", 1])
            value = base.recvjson(tracker._sock)
            if value[0] != base.TrackerCode.SUCCESS:
                raise RuntimeError(f"the tracker answered {value!r}")
            host, port, match_key = value[1]
            session = rpc.connect(host, port, match_key)
        except Exception as err:
            raise IntSmoothError(
                f"no server of {self} became free within {self.timeout:.0f} s, or it failed "
                f"to connect ({_first_line(err)})"
            ) from None
        finally:
            tracker.close()
        session.intsmooth_address = (host, int(port))
        return session


def session_address(session) -> str:
    """``HOST:PORT`` of the server of a session from :meth:`Device.open` ("unknown" else)."""
    address = getattr(session, "intsmooth_address", None)
    return "unknown" if address is None else f"{address[0]}:{address[1]}"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def device_report(session) -> dict:
    """What the remote device is (rpc_listener.py's report; a stock TVM server gives less)."""
    try:
        return json.loads(session.get_function(REPORT_FUNCTION)())
    except Exception:  # a stock rpc_server: ask LLVM, when the server's TVM has it
        report = {"machine": "unknown", "name": "unknown (a stock TVM RPC server)"}
        try:
            triple = session.get_function("target.llvm_get_system_triple")()
            report["machine"] = triple.split("-")[0]
            report["llvm_cpu"] = session.get_function("target.llvm_get_system_cpu")()
            report["name"] = f"{report['llvm_cpu']} ({triple})"
        except Exception:
            pass
        return report


def library_machine(path: str | Path, header: bytes | None = None) -> str:
    """The architecture a shared library was built for, from its ELF header (``header``: its
    first 20 bytes, when already read)."""
    if header is None:
        with open(path, "rb") as f:
            header = f.read(20)
    if header[:4] != b"\x7fELF" or len(header) < 20:
        raise IntSmoothError(f"{path} is not an ELF shared library")
    order = "<" if header[5] == 1 else ">"
    machine = struct.unpack(order + "H", header[18:20])[0]
    return ELF_MACHINES.get(machine, f"ELF machine {machine:#x}")


def load_remote_vm(session, library: str | Path, sha256: str | None = None):
    """Upload a compiled library to ``session``'s device and load it into a Relax VM there.

    The bytes are read once: their SHA-256 must be ``sha256`` (when given), and those bytes are
    uploaded. Returns ``(vm, device)``. Raises IntSmoothError when the library was built for
    another architecture than the device's, or is not the one ``sha256`` names.
    """
    from tvm import relax

    library = Path(library)
    data = library.read_bytes()
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise IntSmoothError(
            f"{library} changed after it was checked: its SHA-256 is no longer the one "
            "meta.json names, so it is not uploaded. Compile the artifact again"
        )
    report = device_report(session)
    built_for = library_machine(library, data[:20])
    device_arch = report.get("machine", "unknown")
    if device_arch != "unknown" and device_arch != built_for:
        raise _arch_error(library, built_for, report)
    # A fresh name per upload: overwriting a library that the session has loaded crashes it.
    name = f"intsmooth-{uuid.uuid4().hex}.so"
    try:
        session.upload(bytearray(data), name)
        remote_lib = session.load_module(name)
    except Exception as err:
        if device_arch == "unknown":  # a stock server: its loader's error is all there is
            raise _arch_error(library, built_for, report, _first_line(err)) from None
        raise
    device = session.cpu()
    return relax.VirtualMachine(remote_lib, device), device


def load_artifact(path: str | Path, session) -> SmoothedClassifier:
    """The SmoothedClassifier of an artifact folder, run on the device of ``session`` (a TVM
    ``RPCSession``, e.g. from :meth:`Device.open`): its library is uploaded there.

    The checks of ``tvm_intsmooth.runtime.load_artifact`` apply (the library's SHA-256, the facts
    compiled into it), the bytes uploaded are those whose SHA-256 was checked, and the library
    must be built for the device's architecture.
    """
    from tvm_intsmooth.runtime import ArtifactMeta, SmoothedClassifier

    sha256 = ArtifactMeta.from_file(path).library_sha256
    return SmoothedClassifier.load_with(
        path, lambda library: load_remote_vm(session, library, sha256)
    )


def _arch_error(library, built_for, report, detail: str | None = None) -> IntSmoothError:
    device = f"{report.get('machine')} ({report.get('name')})"
    if detail:
        device = f"one that cannot load it: {detail}"
    return IntSmoothError(
        f"{library} was built for {built_for}, but the RPC device is {device}. Compile the model "
        "for the device's target (e.g. `intsmooth compile ... --target rpi4` or rpi5 for a "
        "Raspberry Pi, `--target host` for this machine) and use that artifact."
    )
