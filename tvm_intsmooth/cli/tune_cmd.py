"""``intsmooth tune``: MetaSchedule-tune a model's kernels for a target; write the database."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from .common import positive_int
from .compile_cmd import add_smoothing_arguments, smoothed_model
from .device_args import add_device_arguments, runner_from_args

HELP = "tune the int8 kernels of a smoothed classifier for a target (MetaSchedule)"
DEFAULT_TRIALS = 1000


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
        default=DEFAULT_TRIALS,
        help=f"measured candidates in all, shared among the kernels (default {DEFAULT_TRIALS})",
    )
    p.add_argument(
        "--trials-per-iter",
        type=positive_int,
        default=64,
        metavar="M",
        help="candidates per search round of one kernel (default 64)",
    )
    p.add_argument("--seed", type=int, default=0, help="search seed (default 0)")
    p.add_argument(
        "--keep",
        choices=["faster", "all"],
        default="faster",
        help="faster: keep a kernel's tuned schedule only where it beats the untuned build's "
        "(default); all: keep every kernel's best tuned schedule",
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        metavar="DB",
        help="database folder (default: schedules/<target>/<workload key>/)",
    )
    add_device_arguments(p)
    p.set_defaults(run=run, make_runner=runner_from_args)


def tune_command(args: argparse.Namespace) -> str:
    """The `intsmooth tune` command line for the model and options of ``args`` (the arguments
    of `intsmooth compile` or of `intsmooth tune` itself)."""
    words = ["intsmooth", "tune", str(args.model), "--sigma", str(args.sigma)]
    words += ["--calib", str(args.calib), "--target", str(args.target)]
    if args.calib_max != 500:
        words += ["--calib-max", str(args.calib_max)]
    words += ["--batch", str(args.batch), "--trials", str(getattr(args, "trials", DEFAULT_TRIALS))]
    if args.clip != "none":
        words += ["--clip", args.clip]
    if args.bits != 64:
        words += ["--bits", str(args.bits)]
    for option, default in (
        ("trials_per_iter", 64),
        ("seed", 0),
        ("keep", "faster"),
        ("output", None),
    ):
        value = getattr(args, option, default)
        if value != default:
            words += ["-o" if option == "output" else "--" + option.replace("_", "-"), str(value)]
    return shlex.join(words)


def run(args: argparse.Namespace) -> int:
    from ..schedule.tune import tune

    smoothed = smoothed_model(args)
    runner = args.make_runner(args) if args.make_runner is not None else None
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
        command=tune_command(args),
    )
    print(result.summary())
    return 0
