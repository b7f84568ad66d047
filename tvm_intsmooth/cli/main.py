"""The ``intsmooth`` command: one subcommand per module of this package."""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import IntSmoothError
from . import (
    bench_cmd,
    certify_cmd,
    compile_cmd,
    demo_cmd,
    emulate_pi_cmd,
    predict_cmd,
    quantize_cmd,
    report_cmd,
)

COMMANDS = [
    demo_cmd,
    quantize_cmd,
    compile_cmd,
    certify_cmd,
    predict_cmd,
    report_cmd,
    bench_cmd,
    emulate_pi_cmd,
]


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="intsmooth",
        description="Integer-arithmetic-only randomized smoothing for ONNX image classifiers.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse the arguments, run the command, turn user errors into one paragraph."""
    args = make_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except IntSmoothError as err:
        print(f"intsmooth {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"intsmooth {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
