"""Pieces shared by the subcommands: data arguments, classifiers from artifacts, seeds."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from ..errors import DataError, IntSmoothError


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        required=True,
        metavar="DATA",
        help="an .npz (x uint8 N x C x H x W, y labels) or a dataset name "
        "(fashion-mnist, fashion-mnist32, digits, cifar10:DIR, caltech101:DIR)",
    )
    p.add_argument(
        "--skip", type=int, default=1, metavar="K", help="use every K-th image (default 1)"
    )
    p.add_argument(
        "--max", type=int, default=None, metavar="M", help="use at most M images (default: all)"
    )


def add_sampling_arguments(
    p: argparse.ArgumentParser, n_default: int, n_help: str, with_n0: bool = True
) -> None:
    """--n0 (selection samples), --n, --alpha and --seed, shared by certify, predict and demo."""
    if with_n0:
        p.add_argument(
            "--n0", type=positive_int, default=100, help="selection samples (default 100)"
        )
    p.add_argument(
        "--n", type=positive_int, default=n_default, help=f"{n_help} (default {n_default})"
    )
    p.add_argument(
        "--alpha", type=probability, default=0.001, help="failure probability (default 0.001)"
    )
    p.add_argument(
        "--seed",
        type=seed_int,
        default=None,
        help="64-bit noise seed, written to the results (default: fresh from the OS"
        ", or the seed of the run being resumed)",
    )


def seed_int(text: str) -> int:
    value = int(text)
    if not 0 <= value < 2**64:
        raise argparse.ArgumentTypeError(f"must be a 64-bit seed in [0, 2^64), got {value}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def probability(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {value}")
    return value


def load_data(args: argparse.Namespace, input_shape: tuple[int, ...], num_classes: int):
    """The selected images and labels, checked against the model's input shape and classes."""
    from ..data import load_dataset

    x, y = load_dataset(str(args.data), skip=args.skip, max_count=args.max)
    if x.shape[1:] != tuple(input_shape):
        raise DataError(
            f"data {args.data}: images are {' x '.join(map(str, x.shape[1:]))} but "
            f"the model takes {' x '.join(map(str, input_shape))}"
        )
    y = np.asarray(y)
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        bad = int(y.max()) if y.max() >= num_classes else int(y.min())
        raise DataError(
            f"data {args.data}: label {bad} is outside the model's classes 0..{num_classes - 1}; "
            "the data and the model do not match"
        )
    return x, y


def data_sha256(x: np.ndarray, y: np.ndarray) -> str:
    """SHA-256 of the selected images and labels (shape, dtype and bytes), for resumption."""
    digest = hashlib.sha256()
    for array in (np.ascontiguousarray(x), np.ascontiguousarray(np.asarray(y, np.int64))):
        digest.update(f"{array.dtype.str}{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def run_provenance(artifact: Path, use_float: bool, x: np.ndarray, y: np.ndarray) -> dict:
    """What a results file must agree on to be resumed: the actual files and data, hashed."""
    from .. import __version__
    from ..runtime.smoothed_classifier import file_sha256

    model = artifact / ("model.onnx" if use_float else "model.so")
    return {
        "artifact_sha256": file_sha256(model),
        "data_sha256": data_sha256(x, y),
        "images": len(x),
        "version": __version__,
    }


def load_classifier(artifact: Path, use_float: bool, batch: int | None = None):
    """The integer SmoothedClassifier of an artifact, or its float reference (``--float``)."""
    from ..runtime import FloatSmoothedClassifier, SmoothedClassifier
    from ..runtime.smoothed_classifier import read_artifact_meta

    if not use_float:
        return SmoothedClassifier.load(artifact)
    meta = read_artifact_meta(artifact)
    if not (artifact / "model.onnx").is_file():
        raise IntSmoothError(f"artifact {artifact} has no model.onnx for the float reference")
    return FloatSmoothedClassifier(
        artifact / "model.onnx",
        meta["sigma"],
        batch=batch or int(meta["batch"]),
        clip=meta.get("clip", "none"),  # the integer default for artifacts without the key
    )


def run_metadata(args: argparse.Namespace, clf, x: np.ndarray, y: np.ndarray) -> dict:
    """The sidecar of a certify or predict run: sampling, noise, artifact and data."""
    from ..runtime.smoothed_classifier import read_artifact_meta

    meta = read_artifact_meta(args.artifact)
    return {
        "seed": args.seed,
        "sigma": clf.sigma,
        "n0": getattr(args, "n0", 1),
        "n": args.n,
        "alpha": args.alpha,
        "noise": "gaussian_float32" if args.use_float else meta["noise"],
        "tv_bound": clf.tv_bound,
        "clip": meta.get("clip", "none"),
        "target": "onnxruntime" if args.use_float else meta["target"],
        "data": str(args.data),
        "skip": args.skip,
        "max": args.max,
        **run_provenance(args.artifact, args.use_float, x, y),
    }


def check_sampling(clf, n: int, n0: int | None = None) -> None:
    """Check n (and n0) against the classifier's limits before any file is written."""
    check = getattr(clf, "check_n", None)
    for value in (n0, n):
        if value is not None and check is not None:
            check(value)


def accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.asarray(pred) == np.asarray(labels))) if len(labels) else 0.0
