"""``intsmooth certify``: Cohen et al.'s CERTIFY for every selected image, written row by row."""

from __future__ import annotations

import argparse
from pathlib import Path

from tvm_intsmooth.cli.common import (
    DataSelection,
    Sampling,
    add_data_arguments,
    add_sampling_arguments,
    load_classifier,
    run_metadata,
)
from tvm_intsmooth.cli.device_args import add_device_arguments, certifier_from_args

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
    from tvm_intsmooth.certify.results_writer import check_output_folder

    check_output_folder(args.output)
    clf = certifier_from_args(args) or load_classifier(args.artifact, args.use_float)
    selection, sampling = DataSelection.from_args(args), Sampling.from_args(args)
    certify_dataset(clf, args.artifact, selection, sampling, args.output, quiet=args.quiet)
    return 0


def certify_dataset(
    clf,
    artifact: Path,
    selection: DataSelection,
    sampling: Sampling,
    output: Path,
    *,
    quiet: bool = False,
) -> int:
    """CERTIFY every selected image with ``clf`` (a classifier of ``artifact``) into the
    results file ``output``, resuming it when it holds rows of the same run; returns the seed."""
    from tqdm import tqdm

    from tvm_intsmooth.certify import ResultRow, ResultsWriter
    from tvm_intsmooth.runtime import CertifyJob

    x, y = selection.load(clf)
    sampling.check(clf)
    skip = selection.skip
    with ResultsWriter(output, run_metadata(artifact, clf, selection, sampling, x, y)) as writer:
        seed = writer.metadata["seed"]
        if writer.replaced_stale_sidecar:
            print(f"{output}: replacing a sidecar without rows (a run that wrote none)")
        todo = [i for i in range(len(x)) if i * skip not in writer.done]
        if len(todo) < len(x):
            how = "its seed" if writer.resumed_seed is not None else "--seed"
            print(
                f"resuming {output}: {len(x) - len(todo)} rows already done, seed {seed} ({how})",
                flush=True,
            )
        # Row idx is image i = idx / skip: the dataset index, as the reference scripts number rows.
        jobs = [CertifyJob(i * skip, x[i]) for i in todo]
        progress = False if quiet else None  # None: a bar for long count runs
        certificates = clf.certify_many(
            jobs, sampling.n0, sampling.n, sampling.alpha, seed=seed, progress=progress
        )
        bar = tqdm(certificates, total=len(jobs), desc="certify", unit="image", disable=quiet)
        for idx, cert, seconds in bar:
            writer.write(ResultRow.from_certificate(idx, int(y[idx // skip]), cert, seconds))
    print(f"wrote {output} (seed {seed})")
    return seed
