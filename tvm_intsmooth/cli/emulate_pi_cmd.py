"""``intsmooth emulate-pi``: an emulated Raspberry Pi serving TVM RPC, in the foreground."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "serve TVM RPC from an emulated aarch64 Raspberry Pi (qemu-user) on 127.0.0.1"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "emulate-pi",
        help=HELP,
        description=HELP
        + (
            ". The first run prepares an arm64 Debian root and the aarch64 wheels of this "
            "machine's TVM in the cache (about 150 MB of downloads). Results are exactly those "
            "of a real aarch64 CPU; its speed means nothing. Runs until Ctrl-C or SIGTERM."
        ),
    )
    p.add_argument("--port", type=int, required=True, help="port to serve on (127.0.0.1)")
    p.add_argument("--tracker", metavar="HOST:PORT", default=None, help="register with a tracker")
    p.add_argument("--key", default=None, help="device key to register under (with --tracker)")
    p.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="the emulator's cache folder (default ~/.cache/tvm_intsmooth/emulated-pi)",
    )
    p.add_argument(
        "--refresh", action="store_true", help="prepare the cache again (after a damaged one)"
    )
    p.add_argument(
        "--mirror",
        default=None,
        help="Debian mirror used to prepare the cache (default http://deb.debian.org/debian)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tvm_intsmooth.errors import IntSmoothError
    from tvm_intsmooth.remote import EmulatedPi, prepare
    from tvm_intsmooth.remote.emulated_pi import serve_emulated_pi
    from tvm_intsmooth.remote.emulator_cache import DEBIAN_MIRROR
    from tvm_intsmooth.remote.session import parse_address

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    tracker = parse_address(args.tracker, "--tracker") if args.tracker else None
    if bool(tracker) != bool(args.key):
        raise IntSmoothError("--tracker HOST:PORT and --key KEY go together")
    mirror = args.mirror or DEBIAN_MIRROR
    if args.refresh:
        prepare(args.cache, mirror=mirror, refresh=True, progress=say)
    key = args.key or ""
    pi = EmulatedPi(
        args.port, tracker=tracker, key=key, cache=args.cache, mirror=mirror, progress=say
    )
    return serve_emulated_pi(pi, say=lambda text: print(text, flush=True))
