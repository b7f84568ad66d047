"""A TVM RPC server that listens in its own process and reports what device it runs on.

Run as a script by any Python with TVM (of tvm_intsmooth it only loads compat.py, the TVM
patches, from the package or from beside it):
``python3 rpc_listener.py --port 9090 [--tracker HOST:PORT --key KEY]``. The emulated Pi runs it
under qemu-user, where TVM's stock ``python -m tvm.exec.rpc_server`` fails: it re-executes
``sys.executable`` for its server process, and without binfmt_misc the kernel cannot execute an
aarch64 binary ("Exec format error"). Here TVM's own listening loop runs in this process and
each session is served in a forked child, as TVM does it; one session at a time.

The port range is that one port: a busy port is an error, not a silent move to the next port
where a client could reach some other server. A TVM RPC server runs any code that any client
sends it (uploaded libraries are loaded, their constructors run with the server's rights), so it
serves 127.0.0.1 unless ``--host`` names another address and ``--allow-remote-clients`` says
that the network it is on is private; reach a board through an SSH tunnel instead
(``ssh -N -L 9090:127.0.0.1:9090 pi``). Once listening (and registered with the tracker
when one is given) it prints one line ``READY <report JSON>`` on stdout; the report is also what
the global function ``tvm_intsmooth.device_report`` returns to RPC clients.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import signal
import sys
import time
from pathlib import Path
from types import ModuleType

REPORT_FUNCTION = "tvm_intsmooth.device_report"
REMOTE_FLAG = "--allow-remote-clients"


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` resolves to is a loopback address (127.0.0.0/8, ::1)."""
    import ipaddress
    import socket

    try:
        infos = socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def remote_clients_refusal(host: str) -> str:
    """Why serving on ``host`` is refused without ``--allow-remote-clients``."""
    return (
        f"serving TVM RPC on {host} would let every machine that reaches it run any code on "
        f"this one (a TVM RPC server loads and runs whatever a client uploads). Serve on "
        f"127.0.0.1 and reach it through an SSH tunnel (ssh -N -L PORT:127.0.0.1:PORT HOST), "
        f"or pass {REMOTE_FLAG} if {host} is on a private network that only you can reach"
    )


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() not in info:
                    info[key.strip()] = value.strip()
    except OSError:
        pass
    return info


def _board_model() -> str | None:
    try:
        with open("/proc/device-tree/model", "rb") as f:
            return f.read().rstrip(b"\0").decode(errors="replace")
    except OSError:
        return None


def device_report(emulator: str | None = None) -> dict:
    """What this machine is: architecture, board or CPU name, cores, and whether it is emulated.

    An aarch64 (or arm) userland whose /proc/cpuinfo describes an x86 CPU (``vendor_id``,
    ``flags``) runs under qemu-user: /proc/cpuinfo is the host kernel's.
    """
    import tvm

    machine = platform.machine()
    cpu = _cpuinfo()
    foreign = machine.startswith(("aarch64", "arm")) and "vendor_id" in cpu
    if emulator is None and foreign:
        emulator = "qemu-user"
    host_cpu = cpu.get("model name") or cpu.get("Hardware") or platform.processor() or "unknown"
    try:
        llvm_cpu = tvm.target.codegen.llvm_get_system_cpu()
    except Exception:  # a runtime-only TVM has no LLVM
        llvm_cpu = None
    return {
        "machine": machine,
        "name": _board_model() or (f"emulated {machine} on {host_cpu}" if emulator else host_cpu),
        "llvm_cpu": llvm_cpu,
        "cores": os.cpu_count(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "tvm": tvm.__version__,
        "emulator": emulator,
    }


def _wait_registered(tracker: tuple[str, int], key: str, port: int, timeout: float) -> None:
    from tvm import rpc

    deadline = time.monotonic() + timeout
    session = rpc.connect_tracker(*tracker)
    try:
        while True:
            servers = session.summary()["server_info"]
            if any(s["key"] == f"server:{key}" and s["addr"][1] == port for s in servers):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"not registered with the tracker {tracker} after {timeout}s")
            time.sleep(0.2)
    finally:
        session.close()


def _compat() -> ModuleType:
    """tvm_intsmooth's compat module (TVM patches), loaded by file path: from the package this
    script belongs to, or from beside it when the two files were copied to a board."""
    here = Path(__file__).resolve().parent
    for path in (here.parent / "compat.py", here / "compat.py"):
        if path.is_file():
            spec = importlib.util.spec_from_file_location("intsmooth_compat", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    raise RuntimeError(f"compat.py not found beside {__file__}: copy it along with this script")


def serve(
    host: str, port: int, tracker: tuple[str, int] | None, key: str, emulator: str | None
) -> None:
    """Listen on ``host:port`` until SIGTERM/SIGINT; print ``READY <report>`` once serving."""
    import multiprocessing

    import tvm_ffi
    from tvm.rpc import server as server_module
    from tvm.rpc.server import PopenRPCServerState

    report = device_report(emulator)
    tvm_ffi.register_global_func(REPORT_FUNCTION, lambda: json.dumps(report), override=True)

    def stop(signum, frame):
        for child in multiprocessing.active_children():  # the session being served
            child.kill()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    _compat().keep_rpc_server_listening(server_module)
    state = PopenRPCServerState(host, port, port + 1, tracker_addr=tracker, key=key, silent=True)
    if tracker is not None:
        _wait_registered(tracker, key, port, timeout=60)
    print("READY " + json.dumps(report), flush=True)
    while state.thread.is_alive():  # TVM's listening loop ends only on an error (tracker gone)
        state.thread.join(0.5)
    raise RuntimeError("TVM's RPC listening loop stopped (see the error above)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (127.0.0.1)")
    parser.add_argument(
        REMOTE_FLAG,
        action="store_true",
        help="allow a --host other than loopback (the network must be private: any client can "
        "run any code here)",
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tracker", default=None, help="HOST:PORT of a TVM RPC tracker")
    parser.add_argument("--key", default="", help="device key to register under (with --tracker)")
    parser.add_argument("--emulator", default=None, help="say that this runs under an emulator")
    args = parser.parse_args(argv)
    if not args.allow_remote_clients and not is_loopback(args.host):
        parser.error(remote_clients_refusal(args.host))
    tracker = None
    if args.tracker:
        host, _, port = args.tracker.rpartition(":")
        tracker = (host, int(port))
        if not args.key:
            parser.error("--tracker needs --key")
    try:
        serve(args.host, args.port, tracker, args.key, args.emulator)
    except (OSError, ValueError, RuntimeError) as err:
        print(f"rpc_listener: {err}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
