"""MetaSchedule's RPC runner for a remote device: tuning candidates are timed on the board.

MetaSchedule's ``RPCRunner`` asks a tracker for a session per measurement; for a single server
(``--rpc HOST:PORT``) the session is opened directly instead. Real ARM schedules must be tuned on
a real board: candidates timed on the emulated Pi run, but their timings mean nothing.
"""

from __future__ import annotations

from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.remote.session import Device, check_server, tracker_servers


def connect_direct(rpc_config):
    """MetaSchedule ``f_create_session`` for one server: ``tracker_host:port`` is the server."""
    from tvm import rpc

    return rpc.connect(
        rpc_config.tracker_host,
        rpc_config.tracker_port,
        session_timeout=rpc_config.session_timeout_sec,
    )


def rpc_runner(device: Device, *, session_timeout: float | None = None):
    """A MetaSchedule RPCRunner timing candidates on ``device`` (one worker per free server).

    Raises:
        IntSmoothError: the device is this machine, or its server/tracker/key is unusable (the
            same checks and messages as ``certify --rpc/--tracker``).
    """
    from tvm.s_tir import meta_schedule as ms

    timeout = int(session_timeout or device.timeout)
    if device.tracker is not None:
        workers = max(1, tracker_servers(device.tracker, device.key, device.timeout))
        config = ms.runner.RPCConfig(*device.tracker, device.key, session_timeout_sec=timeout)
        return ms.runner.RPCRunner(config, max_workers=workers)
    if device.rpc is None:
        raise IntSmoothError("rpc_runner needs --rpc HOST:PORT or --tracker HOST:PORT --key KEY")
    check_server(device.rpc, device.timeout)
    config = ms.runner.RPCConfig(*device.rpc, "direct", session_timeout_sec=timeout)
    return ms.runner.RPCRunner(config, f_create_session=connect_direct, max_workers=1)
