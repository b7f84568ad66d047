"""``intsmooth certify``: Cohen et al.'s CERTIFY for every selected image, written row by row."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .common import (
    add_data_arguments,
    add_sampling_arguments,
    check_sampling,
    load_classifier,
    load_data,
    run_metadata,
)

HELP = "certify the L2 robustness of a smoothed classifier on a dataset"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "certify",
        help=HELP,
        description=HELP
        + (
            ". For each image: n0 noisy samples choose the class, n fresh samples (another stream) "
            "bound its probability (Clopper-Pearson at alpha, minus the sampler's TV bound) and "
            "give the radius sigma * Phi^-1(pA), or abstain. Rows are flushed one by one; "
            "rerunning the same command resumes after the last finished row."
        ),
    )
    p.add_argument("artifact", type=Path, help="artifact folder from `intsmooth compile`")
    add_data_arguments(p)
    add_sampling_arguments(p, 100000, "estimation samples")
    p.add_argument(
        "--float",
        action="store_true",
        dest="use_float",
        help="certify the float reference instead (same ONNX model, continuous "
        "Gaussian noise, onnxruntime)",
    )
    p.add_argument("-o", "--output", required=True, type=Path, help="RESULTS.tsv to write")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..certify import ResultRow, ResultsWriter
    from ..certify.results_writer import check_output_folder

    check_output_folder(args.output)
    clf = load_classifier(args.artifact, args.use_float)
    x, y = load_data(args, clf.input_shape, clf.num_classes)
    check_sampling(clf, args.n, args.n0)
    with ResultsWriter(args.output, run_metadata(args, clf, x, y)) as writer:
        seed = writer.metadata["seed"]
        if writer.replaced_stale_sidecar:
            print(f"{args.output}: replacing a sidecar without rows (a run that wrote none)")
        todo = [i for i in range(len(x)) if i * args.skip not in writer.done]
        if len(todo) < len(x):
            how = "its seed" if writer.resumed_seed is not None else "--seed"
            print(
                f"resuming {args.output}: {len(x) - len(todo)} rows already done, seed {seed} "
                f"({how})",
                flush=True,
            )
        progress = False if args.quiet else None  # None: a bar for long count runs
        for i in tqdm(todo, desc="certify", unit="image", disable=args.quiet):
            idx = i * args.skip  # the dataset index, as the reference scripts number rows
            start = time.monotonic()
            cert = clf.certify(
                x[i], args.n0, args.n, args.alpha, index=idx, seed=seed, progress=progress
            )
            writer.write(ResultRow.from_certificate(idx, int(y[i]), cert, time.monotonic() - start))
    print(f"wrote {args.output} (seed {seed})")
    return 0
