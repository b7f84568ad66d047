"""``intsmooth predict``: Cohen et al.'s PREDICT (binomial test on the top two counts)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tvm_intsmooth.cli.common import (
    DataSelection,
    Sampling,
    add_data_arguments,
    add_sampling_arguments,
    add_threads_argument,
    load_classifier,
    run_metadata,
    use_threads,
)
from tvm_intsmooth.cli.device_args import add_device_arguments, certifier_from_args

HELP = "predict with a smoothed classifier (abstaining when the vote is not significant)"
# What is kept when a file cannot be written (cli/main.py prints it)
KEPT_ON_DISK_ERROR = (
    "predict writes its TSV and sidecar whole or not at all, so an earlier file at -o is unchanged"
)


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help=HELP, description=HELP + ".")
    p.add_argument("artifact", type=Path, help="artifact folder from `intsmooth compile`")
    add_data_arguments(p)
    add_sampling_arguments(p, 1000, "noisy samples", with_n0=False)
    p.add_argument(
        "--float",
        action="store_true",
        dest="use_float",
        help="use the float reference smoothing instead",
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="optional TSV: idx, label, predict, correct (and its sidecar TSV.json: seed, "
        "n, alpha, artifact and data hashes)",
    )
    add_threads_argument(p)
    add_device_arguments(p, verify=True)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from tvm_intsmooth.certify import ABSTAIN, sidecar_path
    from tvm_intsmooth.certify.results_writer import (
        check_output_folder,
        fresh_seed,
        write_durably,
        write_json_durably,
    )

    if args.output is not None:
        check_output_folder(args.output)
    use_threads(args)
    clf = certifier_from_args(args) or load_classifier(args.artifact, args.use_float, args.threads)
    selection = DataSelection.from_args(args)
    x, y = selection.load(clf)
    seed = fresh_seed() if args.seed is None else args.seed
    sampling = Sampling(args.n, args.alpha, seed)
    sampling.check(clf)
    metadata = {
        **run_metadata(args.artifact, clf, selection, sampling, x, y),
        "procedure": "predict",
    }
    progress = False if args.quiet else None
    skip = selection.skip
    with tqdm(range(len(x)), desc="predict", unit="image", disable=args.quiet) as images:
        preds = np.array(
            [
                clf.predict(x[i], args.n, args.alpha, index=i * skip, seed=seed, progress=progress)
                for i in images
            ]
        )
    if args.output is not None:
        lines = ["idx\tlabel\tpredict\tcorrect"] + [
            f"{i * skip}\t{y[i]}\t{preds[i]}\t{int(preds[i] == y[i])}" for i in range(len(x))
        ]
        write_durably(args.output, ("\n".join(lines) + "\n").encode())
        write_json_durably(sidecar_path(args.output), metadata)
    print(
        f"seed {seed}, n {args.n}, alpha {args.alpha}: accuracy {100 * np.mean(preds == y):.2f}%,"
        f" abstained {100 * np.mean(preds == ABSTAIN):.2f}% of {len(x)} images"
    )
    return 0
