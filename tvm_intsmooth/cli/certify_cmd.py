"""``intsmooth certify``: Cohen et al.'s CERTIFY for every selected image, written row by row."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..remote.remote_pool import CertifyJob
from .common import (
    add_data_arguments,
    add_sampling_arguments,
    check_sampling,
    load_classifier,
    load_data,
    run_metadata,
)
from .device_args import add_device_arguments, certifier_from_args

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
    add_device_arguments(p, workers=True)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..certify import ResultRow, ResultsWriter
    from ..certify.results_writer import check_output_folder

    check_output_folder(args.output)
    clf = certifier_from_args(args) or load_classifier(args.artifact, args.use_float)
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
        # Row idx is image i = idx / skip: the dataset index, as the reference scripts number rows.
        jobs = [CertifyJob(i * args.skip, x[i]) for i in todo]
        certificates = tqdm(
            _certify_many(clf, jobs, args, seed),
            total=len(jobs),
            desc="certify",
            unit="image",
            disable=args.quiet,
        )
        for idx, cert, seconds in certificates:
            writer.write(ResultRow.from_certificate(idx, int(y[idx // args.skip]), cert, seconds))
    print(f"wrote {args.output} (seed {seed})")
    return 0


def _certify_many(clf, jobs, args: argparse.Namespace, seed: int):
    """``(index, Certificate, seconds)`` of every job in order, here or on the remote device."""
    if hasattr(clf, "certify_many"):  # a RemoteCertifier
        yield from clf.certify_many(jobs, args.n0, args.n, args.alpha, seed=seed)
        return
    progress = False if args.quiet else None  # None: a bar for long count runs
    for job in jobs:
        start = time.monotonic()
        cert = clf.certify(
            job.image, args.n0, args.n, args.alpha, index=job.index, seed=seed, progress=progress
        )
        yield job.index, cert, time.monotonic() - start
