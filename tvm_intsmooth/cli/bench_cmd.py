"""``intsmooth bench``: samples per second and latency of an artifact, here or over TVM RPC."""

from __future__ import annotations

import argparse
from pathlib import Path

from tvm_intsmooth.cli.common import add_threads_argument, positive_int, use_threads
from tvm_intsmooth.cli.device_args import add_device_arguments, device_from_args

HELP = "time an artifact's smoothed function on this machine or a remote device"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bench",
        help=HELP,
        description=HELP
        + (
            ". With --rpc or --tracker, the library is uploaded and timed on the device with TVM's "
            "time_evaluator; prints samples/s, the latency of one batch (median and p90 over the "
            "repeats) and the device's name and architecture."
        ),
    )
    p.add_argument("artifact", type=Path, help="artifact folder from `intsmooth compile`")
    add_device_arguments(p)
    p.add_argument(
        "--n",
        type=positive_int,
        default=None,
        help="noisy samples per repeat, in whole batches (default: 10 batches)",
    )
    p.add_argument("--repeat", type=positive_int, default=5, help="timed repeats (default 5)")
    add_threads_argument(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tvm_intsmooth.remote import benchmark

    use_threads(args)
    device = device_from_args(args)
    if args.threads is not None and not device.is_local:
        from tvm_intsmooth.errors import IntSmoothError

        raise IntSmoothError("--threads sets this machine's threads: drop it with --rpc/--tracker")
    result = benchmark(args.artifact, device, n=args.n, repeat=args.repeat, threads=args.threads)
    print(result.summary())
    return 0
