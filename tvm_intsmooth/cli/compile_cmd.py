"""``intsmooth compile``: ONNX model -> compiled integer smoothed classifier (artifact folder)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tvm_intsmooth.cli.smoothing_args import add_smoothing_arguments, smoothed_model, tune_command

HELP = "compile an ONNX classifier into an integer-only smoothed classifier"
# What is kept when a file cannot be written (cli/main.py prints it)
KEPT_ON_DISK_ERROR = (
    "the artifact is built in a new folder beside -o and swapped in only when complete, so an "
    "earlier artifact at -o is unchanged"
)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "compile",
        help=HELP,
        description=HELP
        + (
            ": quantize (calibrated on DATA), insert integer noise and vote counting, build for "
            "TARGET and write the artifact folder (model.so, meta.json, model.onnx)."
        ),
    )
    add_smoothing_arguments(p)
    p.add_argument(
        "--dump-ir",
        type=Path,
        default=None,
        metavar="DIR",
        help="write the IR after each phase to DIR/NN_<phase>.py (the phases of "
        "tvm_intsmooth.pipeline.PHASES, the names every entry point dumps under)",
    )
    p.add_argument(
        "--schedules",
        default="auto",
        metavar="DB",
        help="tuned schedule database folder (written by `intsmooth tune`), 'auto' (default: "
        "the shipped database for this architecture and target, if any) or 'none'",
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        type=Path,
        help="artifact folder to write (an existing one is replaced only if intsmooth wrote it)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace -o even if it is not an artifact written by intsmooth",
    )
    p.set_defaults(run=run)


def compile_artifact(
    smoothed, output: Path, target="host", *, force=False, schedules="auto", dump_ir=None
):
    """:func:`~tvm_intsmooth.runtime.save_artifact` with what the command prints: which tuned
    schedules it applied and what it wrote. Returns meta.json's ``schedules`` record."""
    from tvm_intsmooth.runtime import ArtifactMeta, save_artifact

    print(f"building for {target} ...", flush=True)
    save_artifact(smoothed, output, target, force=force, schedules=schedules, dump_ir=dump_ir)
    used = ArtifactMeta.from_file(output).schedules
    if used["database"]:
        print(
            f"tuned schedules: {used['database']} ({used['tuned_functions']} of "
            f"{used['functions']} kernels)"
        )
    meta = smoothed.metadata()
    print(
        f"wrote {output}: sigma {meta['sigma']}, batch {meta['batch']}, clip {meta['clip']}, "
        f"noise rounded Gaussian (K = {meta['K']}, {meta['bits']}-bit thresholds, TV bound "
        f"{meta['tv_bound']:.3g} per sample), integer-only"
    )
    return used


def print_agreement(args: argparse.Namespace, smoothed) -> float:
    """Print the top-1 agreement of the base classifier that is deployed (noisy calibration,
    int16 noisy pixels) with the float model, on noisy held-out images."""
    from tvm_intsmooth.importer import import_onnx
    from tvm_intsmooth.runtime.agreement import held_out_images, noisy_agreement

    images, where = held_out_images(args.calib, args.calib_images)
    agreement = noisy_agreement(smoothed, import_onnx(args.model).mod, images)
    print(
        f"top-1 agreement float vs integer: {100 * agreement:.2f}% on one noisy copy of each "
        f"of {where} (the deployed model: noisy calibration, int16 noisy pixels)"
    )
    return agreement


def run(args: argparse.Namespace) -> int:
    from tvm_intsmooth.runtime.artifact import check_artifact_destination

    check_artifact_destination(args.output, args.force)  # before the long compile
    smoothed = smoothed_model(args, args.dump_ir)
    for note in smoothed.quantized.notes:  # what canonicalization changed (a dropped softmax)
        print(f"note: {note}")
    print_agreement(args, smoothed)
    schedules = None if args.schedules == "none" else args.schedules
    used = compile_artifact(
        smoothed,
        args.output,
        args.target,
        force=args.force,
        schedules=schedules,
        dump_ir=args.dump_ir,
    )
    if not used["database"] and schedules is not None:
        print(
            f"warning: no tuned schedules for this model on {args.target} (workload key "
            f"{used['key']}): the build is untuned (default schedules). Tune it with\n  "
            f"{tune_command(args)}",
            file=sys.stderr,
        )
    return 0
