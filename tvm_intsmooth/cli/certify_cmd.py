"""``intsmooth certify``: Cohen et al.'s CERTIFY for every selected image, written row by row;
with ``--radii``, sequential certification at those radii (anytime-valid, stops early)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tvm_intsmooth.cli.common import (
    DataSelection,
    Sampling,
    add_data_arguments,
    add_sampling_arguments,
    add_threads_argument,
    load_classifier,
    positive_int,
    radii_list,
    run_metadata,
    use_threads,
)
from tvm_intsmooth.cli.device_args import add_device_arguments, certifier_from_args

HELP = "certify the L2 robustness of a smoothed classifier on a dataset"
DEFAULT_N = 100000
# What is kept when a file cannot be written (cli/main.py prints it)
KEPT_ON_DISK_ERROR = (
    "every row written before is kept (each is synced to disk as it is written): the same "
    "command resumes after the last one"
)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "certify",
        help=HELP,
        description=HELP
        + (
            ". For each image: n0 noisy samples choose the class, n fresh samples (another stream) "
            "bound its probability (Clopper-Pearson at alpha, minus the sampler's TV bound) and "
            "give the radius sigma * Phi^-1(pA), or abstain. With --radii, estimation samples "
            "are drawn in rounds (1000, 1500, 2000, 2500, 3500, ... up to --n-max) under an "
            "anytime-valid bound until the largest listed radius that can be certified is "
            "decided, usually after a few thousand samples; the rows then add the radius decided, "
            "the bound and why it stopped (n is the samples used). Rows are flushed one by one; "
            "rerunning the same command resumes after the last finished row."
        ),
    )
    p.add_argument("artifact", type=Path, help="artifact folder from `intsmooth compile`")
    add_data_arguments(p)
    add_sampling_arguments(p, DEFAULT_N, "estimation samples of fixed-n CERTIFY")
    p.set_defaults(n=None)  # None: DEFAULT_N, unless --radii (then --n is an error)
    p.add_argument(
        "--radii",
        type=radii_list,
        default=None,
        metavar="R1,R2,...",
        help="certify sequentially at these L2 radii (increasing, e.g. 0.25,0.5,0.75): stop "
        "as soon as the largest certifiable one is decided (default: fixed-n CERTIFY)",
    )
    p.add_argument(
        "--n-max",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"with --radii: at most N estimation samples per image (default {DEFAULT_N})",
    )
    p.add_argument(
        "--float",
        action="store_true",
        dest="use_float",
        help="certify the float reference instead (same ONNX model, continuous "
        "Gaussian noise, onnxruntime)",
    )
    p.add_argument("-o", "--output", required=True, type=Path, help="RESULTS.tsv to write")
    add_threads_argument(p)
    add_device_arguments(p, workers=True, verify=True)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tvm_intsmooth.certify.results_writer import check_output_folder

    check_output_folder(args.output)
    check_procedure_args(args)
    use_threads(args)
    clf = certifier_from_args(args) or load_classifier(args.artifact, args.use_float, args.threads)
    selection, sampling = DataSelection.from_args(args), Sampling.from_args(args)
    certify_dataset(clf, args.artifact, selection, sampling, args.output, quiet=args.quiet)
    return 0


def check_procedure_args(args: argparse.Namespace) -> None:
    """Fill in --n or --n-max for the procedure chosen; IntSmoothError for a mix of both."""
    from tvm_intsmooth.errors import IntSmoothError

    if args.radii is None:
        if args.n_max is not None:
            raise IntSmoothError(
                "--n-max goes with --radii (sequential certification); fixed-n CERTIFY takes --n"
            )
        args.n = DEFAULT_N if args.n is None else args.n
    else:
        if args.n is not None:
            raise IntSmoothError(
                f"--n {args.n} goes with fixed-n CERTIFY; with --radii the run stops when the "
                "answer is known, within --n-max samples per image: give --n-max instead"
            )
        args.n_max = DEFAULT_N if args.n_max is None else args.n_max


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
            jobs,
            sampling.n0,
            sampling.n,
            sampling.alpha,
            seed=seed,
            radii=sampling.radii,
            n_max=sampling.n_max,
            progress=progress,
        )
        bar = tqdm(certificates, total=len(jobs), desc="certify", unit="image", disable=quiet)
        for idx, cert, seconds in bar:
            label = int(y[idx // skip])
            writer.write(ResultRow.from_certificate(idx, label, cert, seconds, sigma=clf.sigma))
    print(f"wrote {output} (seed {seed})")
    return seed
