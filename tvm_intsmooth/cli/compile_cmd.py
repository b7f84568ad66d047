"""``intsmooth compile``: ONNX model -> compiled integer smoothed classifier (artifact folder)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import positive_int

HELP = "compile an ONNX classifier into an integer-only smoothed classifier"


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
        help="write the IR after each smoothing phase to DIR",
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


def add_smoothing_arguments(p: argparse.ArgumentParser) -> None:
    """The model, noise and target arguments that decide the compiled graph (compile, tune)."""
    p.add_argument("model", type=Path, help="ONNX model taking float pixels in [0, 1]")
    p.add_argument("--sigma", type=float, required=True, help="noise level in [0, 1] pixel units")
    p.add_argument(
        "--target",
        default="host",
        help="target name from targets/ (x86-vnni, x86-avx2, x86-64, rpi4, rpi5; host: the "
        "best of the x86 ones that this CPU runs) or a target JSON file (default: host)",
    )
    p.add_argument(
        "--calib",
        required=True,
        metavar="DATA",
        help="calibration data: .npz, or a dataset name (its training split is used)",
    )
    p.add_argument(
        "--calib-max",
        type=positive_int,
        default=500,
        metavar="M",
        help="calibration images to use (default 500)",
    )
    p.add_argument(
        "--batch",
        type=positive_int,
        default=100,
        help="noisy samples per call of the compiled function (default 100)",
    )
    p.add_argument(
        "--clip",
        default="none",
        choices=["none", "clip"],
        help="noisy pixels: 'none' leaves them unclipped, as Cohen et al. and noise-augmented "
        "training do; 'clip' clamps them to 0..255 (default none)",
    )
    p.add_argument(
        "--bits",
        type=int,
        default=64,
        choices=[32, 64],
        help="uniform bits of the noise sampler (default 64)",
    )


def smoothed_model(args: argparse.Namespace, dump_ir: Path | None = None):
    """The SmoothedModel that the arguments of :func:`add_smoothing_arguments` describe."""
    from ..data import load_dataset
    from ..errors import IntSmoothError
    from ..importer import import_onnx
    from ..quantize import check_images
    from ..smoothing.api import smooth

    if not args.sigma > 0:
        raise IntSmoothError(f"--sigma must be > 0, got {args.sigma}")
    imported = import_onnx(args.model)
    x, _ = load_dataset(str(args.calib), split="train", max_count=args.calib_max)
    check_images(x, imported.input_shape, f"calibration data {args.calib}")
    print(f"quantizing {args.model} (calibration: {len(x)} images of {args.calib}) ...", flush=True)
    return smooth(
        imported,
        x,
        args.sigma,
        batch=args.batch,
        clip=args.clip,
        bits=args.bits,
        dump_ir=dump_ir,
    )


def run(args: argparse.Namespace) -> int:
    import sys

    from ..runtime import save_artifact
    from ..runtime.smoothed_classifier import check_artifact_destination
    from .tune_cmd import tune_command

    check_artifact_destination(args.output, args.force)  # before the long compile
    smoothed = smoothed_model(args, args.dump_ir)
    print(f"building for {args.target} ...", flush=True)
    schedules = None if args.schedules == "none" else args.schedules
    save_artifact(smoothed, args.output, args.target, force=args.force, schedules=schedules)
    used = json.loads((args.output / "meta.json").read_text())["schedules"]
    if used["database"]:
        print(
            f"tuned schedules: {used['database']} ({used['tuned_functions']} of "
            f"{used['functions']} kernels)"
        )
    elif schedules is not None:
        print(
            f"warning: no tuned schedules for this model on {args.target} (workload key "
            f"{used['key']}): the build is untuned (default schedules). Tune it with\n  "
            f"{tune_command(argparse.Namespace(**{**vars(args), 'output': None}))}",
            file=sys.stderr,
        )
    print(
        f"wrote {args.output}: sigma {args.sigma}, batch {args.batch}, clip {args.clip}, noise "
        "rounded Gaussian "
        f"(K = {smoothed.table.K}, {args.bits}-bit thresholds, TV bound "
        f"{smoothed.tv_bound:.3g} per sample), integer-only"
    )
    return 0
