"""``intsmooth demo``: the main job on the bundled model and real images, in a few minutes.

Compiles the bundled Fashion-MNIST CNN (sigma 0.25) for this CPU, certifies bundled test images
with the integer smoothed classifier and with the float reference, and prints both
certified-accuracy rows side by side, plus a plot.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tvm_intsmooth.cli.common import (
    DataSelection,
    Sampling,
    add_sampling_arguments,
    add_threads_argument,
    load_classifier,
    positive_int,
    use_threads,
)

HELP = "compile the bundled model, certify bundled real images, integer vs float"
SIGMA = 0.25
# What is kept when a file cannot be written (cli/main.py prints it)
KEPT_ON_DISK_ERROR = "the files it wrote before (artifact, results) are kept"


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help=HELP, description=HELP + ".")
    p.add_argument(
        "--max-images",
        type=positive_int,
        default=20,
        metavar="M",
        help="images to certify (default 20, every 20th of the Fashion-MNIST test set)",
    )
    add_sampling_arguments(p, 1000, "estimation samples per image, to fit a few minutes")
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("intsmooth-demo"),
        help="output folder (default ./intsmooth-demo)",
    )
    add_threads_argument(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tvm_intsmooth.assets import DEMO_DATA, DEMO_MODEL
    from tvm_intsmooth.certify import sidecar_path
    from tvm_intsmooth.certify.results_writer import fresh_seed
    from tvm_intsmooth.cli.certify_cmd import certify_dataset
    from tvm_intsmooth.cli.compile_cmd import compile_artifact
    from tvm_intsmooth.cli.report_cmd import report
    from tvm_intsmooth.cli.smoothing_args import smooth_model

    use_threads(args)
    out = args.output
    out.mkdir(parents=True, exist_ok=True)
    seed = fresh_seed() if args.seed is None else args.seed
    artifact = out / "fmnist_cnn_sigma025.host"
    compile_artifact(smooth_model(DEMO_MODEL, DEMO_DATA, SIGMA), artifact)
    selection = DataSelection(DEMO_DATA, max_images=args.max_images)
    sampling = Sampling(args.n, args.alpha, seed, args.n0)
    results = []
    for kind, use_float in (("integer", False), ("float", True)):
        tsv = out / f"certify_{kind}.tsv"
        tsv.unlink(missing_ok=True)  # a fresh demo run: do not resume an earlier one
        sidecar_path(tsv).unlink(missing_ok=True)
        print(
            f"== certify, {'float reference' if use_float else kind}: {args.max_images} images, "
            f"n0 {args.n0}, n {args.n}, alpha {args.alpha}, seed {seed}",
            flush=True,
        )
        clf = load_classifier(artifact, use_float, args.threads)
        print(f"   threads: {clf.threads}", flush=True)
        certify_dataset(clf, artifact, selection, sampling, tsv, quiet=args.quiet)
        results.append(tsv)
    report(results, out / "certified_accuracy.png")
    return 0
