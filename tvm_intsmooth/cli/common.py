"""Pieces shared by the subcommands: data arguments, classifiers from artifacts, seeds."""

from __future__ import annotations

import argparse
import json
import secrets
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
        type=int,
        default=None,
        help="64-bit noise seed, written to the results (default: fresh from the OS"
        ", or the seed of the run being resumed)",
    )


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


def load_data(args: argparse.Namespace, input_shape: tuple[int, ...]):
    """The selected images and labels, checked against the model's input shape."""
    from ..data import load_dataset

    x, y = load_dataset(str(args.data), skip=args.skip, max_count=args.max)
    if x.shape[1:] != tuple(input_shape):
        raise DataError(
            f"data {args.data}: images are {' x '.join(map(str, x.shape[1:]))} but "
            f"the model takes {' x '.join(map(str, input_shape))}"
        )
    return x, y


def load_classifier(artifact: Path, use_float: bool, batch: int | None = None):
    """The integer SmoothedClassifier of an artifact, or its float reference (``--float``)."""
    from ..runtime import FloatSmoothedClassifier, SmoothedClassifier

    if not (artifact / "meta.json").is_file():
        raise IntSmoothError(
            f"artifact {artifact}: not found (expected a folder written by "
            "`intsmooth compile`, with meta.json and model.so)"
        )
    if not use_float:
        return SmoothedClassifier.load(artifact)
    meta = json.loads((artifact / "meta.json").read_text())
    if not (artifact / "model.onnx").is_file():
        raise IntSmoothError(f"artifact {artifact} has no model.onnx for the float reference")
    return FloatSmoothedClassifier(
        artifact / "model.onnx",
        meta["sigma"],
        batch=batch or int(meta["batch"]),
        clip=meta.get("clip", "clip"),  # the same base classifier as the integer artifact
    )


def fresh_seed() -> int:
    """A seed from the operating system (no fixed seed is ever a default: docs/soundness.md)."""
    return secrets.randbits(64)


def accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.asarray(pred) == np.asarray(labels))) if len(labels) else 0.0
