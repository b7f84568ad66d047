"""``intsmooth demo``: the main job on the bundled model and real images, in a few minutes.

Compiles the bundled Fashion-MNIST CNN (sigma 0.25) for this CPU, certifies bundled test images
with the integer smoothed classifier and with the float reference, and prints both
certified-accuracy rows side by side, plus a plot.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_sampling_arguments, positive_int

HELP = "compile the bundled model, certify bundled real images, integer vs float"


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help=HELP, description=HELP + ".")
    p.add_argument(
        "--max",
        type=positive_int,
        default=20,
        metavar="M",
        help="images to certify (default 20, every 20th of the Fashion-MNIST test set)",
    )
    add_sampling_arguments(p, 1000, "estimation samples per image, to fit a few minutes")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("intsmooth-demo"),
        help="output folder (default ./intsmooth-demo)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..assets import DEMO_DATA, DEMO_MODEL
    from ..certify.results_writer import fresh_seed
    from .main import main

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    seed = str(fresh_seed() if args.seed is None else args.seed)
    artifact = out / "fmnist_cnn_sigma025.host"
    steps = [
        [
            "compile",
            str(DEMO_MODEL),
            "--sigma",
            "0.25",
            "--calib",
            str(DEMO_DATA),
            "-o",
            str(artifact),
        ]
    ]
    common = [
        "--data",
        str(DEMO_DATA),
        "--max",
        str(args.max),
        "--n0",
        str(args.n0),
        "--n",
        str(args.n),
        "--alpha",
        str(args.alpha),
        "--seed",
        seed,
    ]
    for kind, extra in (("integer", []), ("float", ["--float"])):
        tsv = out / f"certify_{kind}.tsv"
        if tsv.exists():  # a fresh demo run: do not resume an earlier one
            tsv.unlink()
            Path(str(tsv) + ".json").unlink(missing_ok=True)
        steps.append(["certify", str(artifact), *common, *extra, "-o", str(tsv)])
    steps.append(
        [
            "report",
            str(out / "certify_integer.tsv"),
            str(out / "certify_float.tsv"),
            "--png",
            str(out / "certified_accuracy.png"),
        ]
    )
    for step in steps:
        if step[0] == "certify":
            kind = "float reference" if "--float" in step else "integer"
            print(
                f"== certify, {kind}: {args.max} images, n0 {args.n0}, n {args.n}, "
                f"alpha {args.alpha}, seed {seed}",
                flush=True,
            )
        code = main(["-q", *step] if args.quiet else step)
        if code:
            return code
    return 0
