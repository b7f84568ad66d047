"""``intsmooth tune``: MetaSchedule-tune a model's kernels for a target; write the database."""

from __future__ import annotations

import argparse
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


def add_parser(sub) -> None:
    p = sub.add_parser(
        "tune",
        help=HELP,
        description=HELP
        + (
            ": builds the smoothed graph as `intsmooth compile` does, tunes its convolutions and "
            "dense layers with the target's tensorizing rules and the XGBoost cost model, and "
            "writes the database to schedules/<target>/<key>/, where `intsmooth compile` finds "
            "it for every model of the same architecture and shapes (weights, calibration data "
            "and sigma do not matter). Candidates are timed on this machine, which must have "
            "the target's instruction set; an ARM board is tuned over RPC (--rpc/--tracker)."
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
        help="database folder (default: schedules/<target>/<workload key>/)",
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
    )
    print(result.summary())
    return 0
