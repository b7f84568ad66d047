"""``intsmooth emulate-pi``: an emulated Raspberry Pi serving TVM RPC, in the foreground."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "serve TVM RPC from an emulated aarch64 Raspberry Pi (qemu-user) on 127.0.0.1"
REMOTE_FLAG = "--allow-remote-clients"  # remote.rpc_listener.REMOTE_FLAG (no TVM import here)
# What is kept when a file cannot be written (cli/main.py prints it)
KEPT_ON_DISK_ERROR = "a half-prepared emulator cache is redone at the next start"


def port_number(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"a TCP port is a number in 1..65535, got {value}")
    return value


def add_parser(sub) -> None:
    p = sub.add_parser(
        "emulate-pi",
        help=HELP,
        description=HELP
        + (
            ". The first run prepares an arm64 Debian root and the aarch64 wheels of this "
            "machine's TVM in the cache (about 150 MB of downloads); every start checks the "
            "root's interpreter and libraries by their SHA-256. Results are exactly those of a "
            "real aarch64 CPU; its speed means nothing. Runs until Ctrl-C or SIGTERM. A TVM RPC "
            "server runs any code that any client sends it, with this user's rights (qemu-user "
            "is no sandbox): it serves 127.0.0.1 only, unless --host names another address and "
            f"{REMOTE_FLAG} says that network is private. Reach it from elsewhere through an "
            "SSH tunnel."
        ),
    )
    p.add_argument("--port", type=port_number, required=True, help="port to serve on")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help=f"address to serve on (default 127.0.0.1; another needs {REMOTE_FLAG})",
    )
    p.add_argument(
        REMOTE_FLAG,
        action="store_true",
        help="serve on a --host that other machines reach: only on a private network, since "
        "any client can run any code here",
    )
    p.add_argument("--tracker", metavar="HOST:PORT", default=None, help="register with a tracker")
    p.add_argument(
        "--tracker-wait",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds to wait for a tracker that is not up yet (default 60)",
    )
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
    pi = EmulatedPi(  # checks the address first: nothing is downloaded for a refused one
        args.port,
        host=args.host,
        allow_remote=args.allow_remote_clients,
        tracker=tracker,
        tracker_wait=args.tracker_wait,
        key=args.key or "",
        cache=args.cache,
        mirror=mirror,
        progress=say,
    )
    if args.refresh:
        prepare(args.cache, mirror=mirror, refresh=True, progress=say)
    return serve_emulated_pi(pi, say=lambda text: print(text, flush=True))
