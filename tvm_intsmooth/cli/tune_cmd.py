"""``intsmooth tune``: MetaSchedule-tune a model's kernels for a target; write the database."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tvm_intsmooth.cli.common import positive_int
from tvm_intsmooth.cli.device_args import add_device_arguments, runner_from_args
from tvm_intsmooth.cli.smoothing_args import (
    TUNE_DEFAULTS,
    TUNE_TRIALS,
    add_smoothing_arguments,
    smoothed_model,
    tune_command,
)

HELP = "tune the int8 kernels of a smoothed classifier for a target (MetaSchedule)"
# What is kept when a file cannot be written (cli/main.py prints it)
KEPT_ON_DISK_ERROR = (
    "the database as saved after the last search round that could be written is kept"
)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "tune",
        help=HELP,
        description=HELP
        + (
            ": builds the smoothed graph as `intsmooth compile` does, tunes its convolutions and "
            "dense layers with the target's tensorizing rules and the XGBoost cost model, and "
            "writes the database to <target>/<key>/ in the user's folder ($INTSMOOTH_SCHEDULES, "
            "else ~/.cache/tvm_intsmooth/schedules; never the installed package), where "
            "`intsmooth compile` finds it for every model of the same architecture and shapes "
            "(weights, calibration data and sigma do not matter). It merges into the database "
            "there (or the shipped one): the faster record of each kernel is kept, no trial is "
            "dropped. The database is saved after every search round; Ctrl-C stops after the "
            "candidate that is running and keeps what was measured. Candidates are timed on "
            "this machine, which must have the target's instruction set; an ARM board is tuned "
            "over RPC (--rpc/--tracker)."
        ),
    )
    add_smoothing_arguments(p)
    p.add_argument(
        "--trials",
        type=positive_int,
        default=TUNE_TRIALS,
        help=f"measured candidates in all, shared among the kernels (default {TUNE_TRIALS})",
    )
    p.add_argument(
        "--trials-per-iter",
        type=positive_int,
        default=TUNE_DEFAULTS["trials_per_iter"],
        metavar="M",
        help="candidates per search round of one kernel (default %(default)s)",
    )
    p.add_argument(
        "--seed", type=int, default=TUNE_DEFAULTS["seed"], help="search seed (default %(default)s)"
    )
    p.add_argument(
        "--keep",
        choices=["faster", "all"],
        default=TUNE_DEFAULTS["keep"],
        help="faster: keep a kernel's tuned schedule only where it beats the untuned build's "
        "(default); all: keep every kernel's best tuned schedule",
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        default=TUNE_DEFAULTS["output"],
        metavar="DB",
        help="database folder (default: <target>/<workload key>/ in the user's folder); an "
        "existing folder must be a database written by intsmooth, which is merged into",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace -o even if it is not a database written by intsmooth",
    )
    add_device_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tvm_intsmooth.pipeline.tune import tune

    smoothed = smoothed_model(args)
    runner = runner_from_args(args)
    print(f"tuning for {args.target}: {args.trials} trials ...", flush=True)
    result = tune(
        smoothed,
        args.target,
        trials=args.trials,
        output=args.output,
        runner=runner,
        trials_per_iter=args.trials_per_iter,
        seed=args.seed,
        keep=args.keep,
        command=tune_command(args, args.trials, **{k: getattr(args, k) for k in TUNE_DEFAULTS}),
        progress=not args.quiet,
        force=args.force,
    )
    print(result.summary())
    if result.interrupted:
        print(
            f"intsmooth tune: interrupted: the {result.trials} trials measured are kept in "
            f"{result.path}; the same command continues (it merges into it)",
            file=sys.stderr,
        )
        return 130
    return 0
