"""Pieces shared by the subcommands: argument types, data selection, sampling, run metadata."""

from __future__ import annotations

import argparse
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tvm_intsmooth.errors import DataError


def hidden_alias(p: argparse.ArgumentParser, flag: str, dest: str, **kwargs) -> None:
    """``flag``: an older spelling of the option stored in ``dest``, accepted but not shown in
    the help (kept for one release)."""
    p.add_argument(flag, dest=dest, help=argparse.SUPPRESS, default=argparse.SUPPRESS, **kwargs)


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


def radii_list(text: str) -> tuple[float, ...]:
    """``0.25,0.5,0.75`` -> (0.25, 0.5, 0.75): finite, >= 0, strictly increasing."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected radii separated by commas, e.g. 0.25,0.5,0.75"
        ) from None
    if not all(0.0 <= r < float("inf") for r in values):
        raise argparse.ArgumentTypeError(f"{text!r}: every radius must be a number >= 0")
    if any(b <= a for a, b in zip(values, values[1:], strict=False)):
        raise argparse.ArgumentTypeError(f"{text!r}: list the radii in increasing order, once each")
    return values


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """--data, --skip and --max-images: the images a command runs on (certify, predict)."""
    p.add_argument(
        "--data",
        required=True,
        metavar="DATA",
        help="an .npz (x uint8 N x C x H x W, y labels) or a dataset name "
        "(fashion-mnist, fashion-mnist32, digits, cifar10:DIR, caltech101:DIR)",
    )
    p.add_argument(
        "--skip", type=positive_int, default=1, metavar="K", help="use every K-th image (default 1)"
    )
    p.add_argument(
        "--max-images",
        type=positive_int,
        default=None,
        metavar="M",
        help="use at most M images (default: all)",
    )
    hidden_alias(p, "--max", "max_images", type=positive_int)


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


@dataclass(frozen=True)
class DataSelection:
    """The images a run uses: every ``skip``-th of ``data``, at most ``max_images`` of them."""

    data: str | Path
    skip: int = 1
    max_images: int | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DataSelection:
        return cls(args.data, args.skip, args.max_images)

    def load(self, clf) -> tuple[np.ndarray, np.ndarray]:
        """The selected images and labels, checked against the classifier's input shape and
        classes."""
        from tvm_intsmooth.data import load_dataset

        x, y = load_dataset(str(self.data), skip=self.skip, max_count=self.max_images)
        if len(x) == 0:
            raise DataError(
                f"data {self.data}: no image to run on (the data holds none, or --skip and "
                "--max-images select none); nothing was written"
            )
        if x.shape[1:] != tuple(clf.input_shape):
            raise DataError(
                f"data {self.data}: images are {' x '.join(map(str, x.shape[1:]))} but "
                f"the model takes {' x '.join(map(str, clf.input_shape))}"
            )
        y = np.asarray(y)
        if len(y) and (y.min() < 0 or y.max() >= clf.num_classes):
            bad = int(y.max()) if y.max() >= clf.num_classes else int(y.min())
            raise DataError(
                f"data {self.data}: label {bad} is outside the model's classes "
                f"0..{clf.num_classes - 1}; the data and the model do not match"
            )
        return x, y

    def metadata(self) -> dict:
        """The sidecar's record of the selection."""
        return {"data": str(self.data), "skip": self.skip, "max": self.max_images}


@dataclass(frozen=True)
class Sampling:
    """How many samples (``n0`` for CERTIFY's selection, None for PREDICT), the failure
    probability and the seed (None: the resumed run's, or a fresh one). With ``radii``,
    CERTIFY is sequential at those radii with at most ``n_max`` estimation samples (``n`` is
    then None)."""

    n: int | None
    alpha: float
    seed: int | None = None
    n0: int | None = None
    radii: tuple[float, ...] | None = None
    n_max: int | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Sampling:
        radii = getattr(args, "radii", None)
        return cls(args.n, args.alpha, args.seed, args.n0, radii, getattr(args, "n_max", None))

    @property
    def sequential(self) -> bool:
        """Whether CERTIFY is sequential (at chosen radii)."""
        return self.radii is not None

    def check(self, clf) -> None:
        """Check n (and n0, n_max) against the classifier's limits before any file is
        written."""
        for value in (self.n0, self.n, self.n_max):
            if value is not None:
                clf.check_n(value)

    def metadata(self) -> dict:
        """The sidecar's record of the procedure: n, or the sequential mode, radii and n_max."""
        if not self.sequential:
            return {"n": self.n}
        return {"mode": "sequential", "radii": list(self.radii), "n_max": self.n_max}


def data_sha256(x: np.ndarray, y: np.ndarray) -> str:
    """SHA-256 of the selected images and labels (shape, dtype and bytes), for resumption."""
    digest = hashlib.sha256()
    for array in (np.ascontiguousarray(x), np.ascontiguousarray(np.asarray(y, np.int64))):
        digest.update(f"{array.dtype.str}{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def add_threads_argument(p: argparse.ArgumentParser) -> None:
    """--threads N: the threads of this machine's kernels (default: one per physical core)."""
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        metavar="N",
        help="threads on this machine (default: one per physical core it may run on; "
        "the results are the same for every count)",
    )


def use_threads(args: argparse.Namespace) -> None:
    """Size TVM's thread pool by --threads before any kernel runs (TVM never grows its pool)."""
    import os

    if getattr(args, "threads", None) is not None:
        os.environ["TVM_NUM_THREADS"] = str(args.threads)


def load_classifier(artifact: Path, use_float: bool, threads: int | None = None):
    """The integer SmoothedClassifier of an artifact, or its float reference (``--float``);
    ``threads``: their thread count on this machine (default: one per physical core)."""
    from tvm_intsmooth.runtime import FloatSmoothedClassifier, load_artifact

    if use_float:
        return FloatSmoothedClassifier.from_artifact(artifact, threads=threads)
    return load_artifact(artifact, threads=threads)


def run_metadata(
    artifact: Path,
    clf,
    selection: DataSelection,
    sampling: Sampling,
    x: np.ndarray,
    y: np.ndarray,
) -> dict:
    """The sidecar of a certify or predict run: sampling, noise, artifact and data, and what a
    results file must agree on to be resumed (the actual files and data, hashed)."""
    from tvm_intsmooth import __version__
    from tvm_intsmooth.runtime import FloatSmoothedClassifier
    from tvm_intsmooth.runtime.artifact import LIBRARY_FILE, ONNX_FILE, ArtifactMeta, file_sha256

    meta = ArtifactMeta.from_file(artifact)
    use_float = isinstance(clf, FloatSmoothedClassifier)
    n0 = {} if sampling.n0 is None else {"n0": sampling.n0}
    return {
        "seed": sampling.seed,
        "sigma": clf.sigma,
        **n0,
        **sampling.metadata(),
        "alpha": sampling.alpha,
        "noise": "gaussian_float32" if use_float else meta.noise,
        "tv_bound": clf.tv_bound,
        "clip": meta.clip,
        "target": "onnxruntime" if use_float else meta.target,
        **selection.metadata(),
        "artifact_sha256": file_sha256(artifact / (ONNX_FILE if use_float else LIBRARY_FILE)),
        "data_sha256": data_sha256(x, y),
        "images": len(x),
        "version": __version__,
        # how the run was executed, not what it computes: not compared when resuming
        "threads": getattr(clf, "threads", None),
    }
