"""The ``intsmooth`` command: one subcommand per module of this package.

Exit status: 0 on success, 1 for a user error (printed as one paragraph, no traceback), 2 for a
command-line usage error (argparse's), 130 when interrupted. A file that cannot be read or
written (a read-only folder, a full disk) is a user error too: one paragraph naming the file,
the error, and what the command kept (its module's ``KEPT_ON_DISK_ERROR``). ``--help`` and
``report`` never import TVM: subcommands import the compiler inside ``run``.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys

from tvm_intsmooth import __version__
from tvm_intsmooth.cli import (
    bench_cmd,
    certify_cmd,
    compile_cmd,
    demo_cmd,
    emulate_pi_cmd,
    predict_cmd,
    quantize_cmd,
    report_cmd,
    tune_cmd,
)
from tvm_intsmooth.errors import IntSmoothError

COMMANDS = [
    demo_cmd,
    quantize_cmd,
    compile_cmd,
    tune_cmd,
    certify_cmd,
    predict_cmd,
    report_cmd,
    bench_cmd,
    emulate_pi_cmd,
]
QUIET_HELP = "no progress bars"
USER_ERROR = 1
KEPT_ON_DISK_ERROR = "nothing that was there before was changed"


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="intsmooth",
        description="Integer-arithmetic-only randomized smoothing for ONNX image classifiers.",
    )
    parser.add_argument("--version", action="version", version=f"intsmooth {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(sub)
    for command in sub.choices.values():  # -q also after the command name
        command.add_argument(
            "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=QUIET_HELP
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse the arguments, run the command, turn user errors into one paragraph."""
    args = make_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except IntSmoothError as err:
        print(f"intsmooth {args.command}: error: {err}", file=sys.stderr)
        return USER_ERROR
    except KeyboardInterrupt:
        print(f"intsmooth {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as err:  # a read-only folder, a full disk, a missing file
        print(f"intsmooth {args.command}: error: {disk_error(err, args)}", file=sys.stderr)
        return USER_ERROR


def disk_error(err: OSError, args: argparse.Namespace) -> str:
    """One paragraph for an OSError: the file, the error, what the command kept."""
    where = err.filename if err.filename is not None else "a file"
    if err.filename2 is not None:
        where = f"{where} -> {err.filename2}"
    code = f" ({errno.errorcode[err.errno]})" if err.errno in errno.errorcode else ""
    module = sys.modules.get(getattr(args.run, "__module__", ""), None)
    kept = getattr(module, "KEPT_ON_DISK_ERROR", KEPT_ON_DISK_ERROR)
    return (
        f"{where}: {err.strerror or err}{code}. {kept[0].upper()}{kept[1:]}. Free space, fix "
        "the folder's permissions or choose another one, and run the command again."
    )


def run(*args) -> None:
    """Run ``intsmooth ARGS...`` from Python (scripts, notebooks, tutorials): echo the command
    line, then raise SystemExit with its exit status if it fails."""
    print("$ intsmooth", " ".join(map(str, args)), flush=True)
    code = main([str(a) for a in args])
    if code:
        raise SystemExit(code)


if __name__ == "__main__":
    sys.exit(main())
