"""``intsmooth certify``: Cohen et al.'s CERTIFY for every selected image, written row by row."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..remote.remote_pool import CertifyJob
from .common import (
    add_data_arguments,
    add_sampling_arguments,
    fresh_seed,
    load_classifier,
    load_data,
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

    from ..certify import ResultRow, ResultsWriter, sidecar_path

    clf = certifier_from_args(args) or load_classifier(args.artifact, args.use_float)
    x, y = load_data(args, clf.input_shape)
    seed = args.seed
    if seed is None and sidecar_path(args.output).is_file():
        seed = json.loads(sidecar_path(args.output).read_text()).get("seed")
    seed = fresh_seed() if seed is None else seed
    meta = json.loads((args.artifact / "meta.json").read_text())
    metadata = {
        "seed": seed,
        "sigma": clf.sigma,
        "n0": args.n0,
        "n": args.n,
        "alpha": args.alpha,
        "noise": "gaussian_float32" if args.use_float else meta["noise"],
        "tv_bound": clf.tv_bound,
        "clip": meta.get("clip", "clip"),
        "target": "onnxruntime" if args.use_float else meta["target"],
        "artifact_sha256": meta["library_sha256"],
        "data": str(args.data),
        "skip": args.skip,
        "max": args.max,
    }
    with ResultsWriter(args.output, metadata) as writer:
        todo = [i for i in range(len(x)) if i * args.skip not in writer.done]
        if len(todo) < len(x):
            print(f"resuming {args.output}: {len(x) - len(todo)} rows already done", flush=True)
        # Row idx is image i = idx / skip: the dataset index, as the reference scripts number rows.
        jobs = [CertifyJob(i * args.skip, x[i]) for i in todo]
        certificates = tqdm(
            _certify_many(clf, jobs, args.n0, args.n, args.alpha, seed),
            total=len(jobs),
            desc="certify",
            unit="image",
        )
        for idx, cert, seconds in certificates:
            writer.write(ResultRow.from_certificate(idx, int(y[idx // args.skip]), cert, seconds))
    print(f"wrote {args.output} (seed {seed})")
    return 0


def _certify_many(clf, jobs, n0: int, n: int, alpha: float, seed: int):
    """``(index, Certificate, seconds)`` of every job in order, here or on the remote device."""
    if hasattr(clf, "certify_many"):  # a RemoteCertifier
        yield from clf.certify_many(jobs, n0, n, alpha, seed=seed)
        return
    for job in jobs:
        start = time.monotonic()
        cert = clf.certify(job.image, n0, n, alpha, index=job.index, seed=seed)
        yield job.index, cert, time.monotonic() - start
