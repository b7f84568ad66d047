"""Datasets as uint8 image arrays.

Every loader returns ``(x, y)``: ``x`` uint8 N x C x H x W (pixel q stands for q/255), ``y`` int64
class labels. :func:`load_dataset` resolves a dataset *spec*, a string that the CLI and the
training script accept:

=============================  ==============================================================
spec                           dataset
=============================  ==============================================================
``path/to/file.npz``           the project's .npz format (``x``, ``y``); ``split`` is ignored
``fashion-mnist``              Fashion-MNIST, 1 x 28 x 28, from the Debian package's folder
``fashion-mnist:DIR``          the same, IDX files read from DIR
``fashion-mnist32[:DIR]``      Fashion-MNIST zero-padded to 32 x 32 and repeated to 3 channels
``digits``                     scikit-learn's 8x8 digits, 1 x 8 x 8 (train = first 1,300)
``cifar10:DIR``                CIFAR-10 python batches in DIR, 3 x 32 x 32
``caltech101:DIR[:SIZE]``      Caltech-101 JPEG folders in DIR, 3 x SIZE x SIZE (default 224)
=============================  ==============================================================

``split`` is ``"train"`` or ``"test"`` (Caltech-101 and digits also take ``"all"``). The subset
arguments select images the way Cohen et al.'s certify script does: every ``skip``-th image
starting at index ``start``, at most ``max_count`` of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tvm_intsmooth.data.npz import load_npz, save_npz
from tvm_intsmooth.errors import DataError

__all__ = [
    "load_dataset",
    "subset",
    "pad_to_32",
    "to_three_channels",
    "fashion_mnist_32",
    "make_bundled_fashion_mnist",
    "load_npz",
    "save_npz",
    "DataError",
]

DATASET_NAMES = ("fashion-mnist", "fashion-mnist32", "digits", "cifar10", "caltech101")


def subset(
    x: np.ndarray, y: np.ndarray, skip: int = 1, max_count: int | None = None, start: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Every ``skip``-th image from index ``start`` on, at most ``max_count`` of them."""
    if skip < 1:
        raise DataError(f"skip={skip}: must be a positive integer (1 keeps every image)")
    if start < 0:
        raise DataError(f"start={start}: must be >= 0")
    if max_count is not None and max_count < 0:
        raise DataError(f"max_count={max_count}: must be >= 0 (or None for no limit)")
    stop = None if max_count is None else start + skip * max_count
    return x[start:stop:skip], y[start:stop:skip]


def pad_to_32(x: np.ndarray) -> np.ndarray:
    """Zero-pad N x C x 28 x 28 images by 2 pixels on every side to N x C x 32 x 32."""
    if x.ndim != 4 or x.shape[2:] != (28, 28):
        raise DataError(f"pad_to_32 expects N x C x 28 x 28 images, got shape {x.shape}")
    return np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))


def to_three_channels(x: np.ndarray) -> np.ndarray:
    """Repeat single-channel N x 1 x H x W images to N x 3 x H x W."""
    if x.ndim != 4 or x.shape[1] != 1:
        raise DataError(f"to_three_channels expects N x 1 x H x W images, got shape {x.shape}")
    return np.repeat(x, 3, axis=1)


def fashion_mnist_32(x: np.ndarray) -> np.ndarray:
    """Fashion-MNIST images (N x 1 x 28 x 28) in CIFAR geometry: padded and 3 channels, 32 x 32."""
    return to_three_channels(pad_to_32(x))


def _split_spec(spec: str) -> tuple[str, list[str]]:
    name, _, rest = spec.partition(":")
    return name.lower(), rest.split(":") if rest else []


def load_dataset(
    spec: str,
    split: str = "test",
    skip: int = 1,
    max_count: int | None = None,
    start: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Load the dataset named by ``spec`` (see the module docstring) and select a subset of it."""
    x, y = _load_full(spec, split)
    return subset(x, y, skip=skip, max_count=max_count, start=start)


def _load_full(spec: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    if spec.lower().endswith(".npz"):
        return load_npz(spec)
    name, args = _split_spec(spec)
    if name in ("fashion-mnist", "fashion-mnist32"):
        from tvm_intsmooth.data.fashion_mnist import load_fashion_mnist

        x, y = load_fashion_mnist(split, ":".join(args) or None)
        return (fashion_mnist_32(x), y) if name == "fashion-mnist32" else (x, y)
    if name == "digits":
        if args:
            raise DataError(f"dataset spec {spec!r}: 'digits' takes no path")
        from tvm_intsmooth.data.digits import load_digits

        return load_digits(split)
    if name == "cifar10":
        from tvm_intsmooth.data.cifar10 import load_cifar10

        if not args:
            raise DataError(f"dataset spec {spec!r}: name the folder, as cifar10:DIR")
        return load_cifar10(":".join(args), split)
    if name == "caltech101":
        from tvm_intsmooth.data.caltech101 import load_caltech101

        if not args:
            raise DataError(f"dataset spec {spec!r}: name the folder, as caltech101:DIR[:SIZE]")
        size = 224
        if len(args) > 1 and args[-1].isdigit():
            size = int(args.pop())
        return load_caltech101(":".join(args), split, size=size)
    if Path(spec).exists():
        raise DataError(f"{spec}: data files must end in .npz (arrays 'x' and 'y')")
    raise DataError(
        f"dataset spec {spec!r}: not an .npz path nor a known dataset; use one of "
        f"{', '.join(DATASET_NAMES)} (cifar10 and caltech101 as NAME:DIR)"
    )


def make_bundled_fashion_mnist(out_dir: str | Path, every: int = 20) -> list[Path]:
    """Write the bundled evaluation files: every ``every``-th Fashion-MNIST test image.

    With the default ``every=20`` that is 500 images, written as ``fashion_mnist_test500.npz``
    (1 x 28 x 28) and ``fashion_mnist32_test500.npz`` (the same images padded to 3 x 32 x 32) into
    ``out_dir``; returns their paths.
    """
    from tvm_intsmooth.data.fashion_mnist import load_fashion_mnist

    out_dir = Path(out_dir)
    x, y = subset(*load_fashion_mnist("test"), skip=every)
    count = len(y)
    paths = [
        out_dir / f"fashion_mnist_test{count}.npz",
        out_dir / f"fashion_mnist32_test{count}.npz",
    ]
    save_npz(paths[0], x, y)
    save_npz(paths[1], fashion_mnist_32(x), y)
    return paths
