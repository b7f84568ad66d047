"""``--rpc HOST:PORT`` / ``--tracker HOST:PORT --key KEY``: where bench, certify and tune run."""

from __future__ import annotations

import argparse

from tvm_intsmooth.cli.common import positive_int

DEFAULT_VERIFY = 0.05  # tvm_intsmooth.remote.verify.DEFAULT_VERIFY (not imported: no TVM here)


def fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1], got {value}")
    return value


def add_device_arguments(
    p: argparse.ArgumentParser, workers: bool = False, verify: bool = False
) -> None:
    """The device options (this machine when none is given); ``workers``: --workers (certify
    shards images); ``verify``: --verify (the command uses the servers' vote counts)."""
    g = p.add_argument_group(
        "remote device (TVM RPC; default: this machine)",
        "A TVM RPC server runs any code that any client sends it: serve on 127.0.0.1 or a "
        "private network only, and reach boards through SSH tunnels.",
    )
    g.add_argument("--rpc", metavar="HOST:PORT", default=None, help="a TVM RPC server")
    g.add_argument(
        "--tracker",
        metavar="HOST:PORT",
        default=None,
        help="a TVM RPC tracker (python -m tvm.exec.rpc_tracker); servers are taken by --key",
    )
    g.add_argument("--key", default=None, help="the device key servers registered under")
    g.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="seconds a server may take to answer (to connect; with certify also per image: "
        "a server past it is dropped and its image goes to another; default 600)",
    )
    if workers:
        g.add_argument(
            "--workers",
            type=positive_int,
            default=None,
            metavar="W",
            help="with --tracker: sessions to shard the images over (default: every free "
            "server under --key)",
        )
    if verify:
        g.add_argument(
            "--verify",
            type=fraction,
            default=DEFAULT_VERIFY,
            metavar="FRACTION",
            help="share of the servers' sample batches recomputed on this machine, drawn at "
            "random once they arrive; an image whose counts differ is refused, naming the "
            "server (0: trust the servers; 1: recompute everything; default "
            f"{DEFAULT_VERIFY}). A forgery of m batches escapes with probability "
            "(1 - FRACTION)^m",
        )


def device_from_args(args: argparse.Namespace):
    """The :class:`tvm_intsmooth.remote.Device` the options name."""
    from tvm_intsmooth.remote import Device
    from tvm_intsmooth.remote.remote_pool import DEFAULT_TIMEOUT

    timeout = DEFAULT_TIMEOUT if args.timeout is None else args.timeout
    return Device.parse(args.rpc, args.tracker, args.key, timeout=timeout)


def certifier_from_args(args: argparse.Namespace):
    """A :class:`RemoteCertifier` when the options name a remote device, else None."""
    import sys

    from tvm_intsmooth.errors import IntSmoothError
    from tvm_intsmooth.remote import RemoteCertifier

    device = device_from_args(args)
    workers = getattr(args, "workers", None)
    if device.is_local:
        if workers is not None:
            raise IntSmoothError("--workers goes with --tracker HOST:PORT --key KEY")
        return None
    if getattr(args, "threads", None) is not None:
        raise IntSmoothError("--threads sets this machine's threads: drop it with --rpc/--tracker")
    if args.use_float:
        raise IntSmoothError("--float runs onnxruntime on this machine: drop --rpc/--tracker")

    def say(text: str) -> None:
        print(f"intsmooth {args.command}: {text}", file=sys.stderr, flush=True)

    return RemoteCertifier(
        args.artifact,
        device,
        workers=workers,
        timeout=device.timeout,
        verify=args.verify,
        say=say,
    )


def runner_from_args(args: argparse.Namespace):
    """``intsmooth tune``'s runner: MetaSchedule's RPC runner on the device the options name,
    or None (candidates timed on this machine)."""
    device = device_from_args(args)
    if device.is_local:
        return None
    from tvm_intsmooth.remote.tune_runner import rpc_runner

    return rpc_runner(device)
