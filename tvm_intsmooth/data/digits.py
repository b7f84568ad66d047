"""scikit-learn's 8x8 handwritten digits (1,797 images), as uint8 images.

The images' values 0..16 are rescaled to 0..255 (``round(v * 255 / 16)``). The set has no official
split; this module fixes one: the first 1,300 images are ``"train"``, the remaining 497 ``"test"``,
and ``"all"`` is all of them.
"""

from __future__ import annotations

import numpy as np

from tvm_intsmooth.errors import DataError

TRAIN_COUNT = 1300


def load_digits(split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Load the digits as ``(x uint8 N x 1 x 8 x 8, y int64 N)``; ``split`` is train/test/all."""
    from sklearn.datasets import load_digits as sklearn_load_digits

    bunch = sklearn_load_digits()
    x = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    if split == "train":
        return x[:TRAIN_COUNT], y[:TRAIN_COUNT]
    if split == "test":
        return x[TRAIN_COUNT:], y[TRAIN_COUNT:]
    if split == "all":
        return x, y
    raise DataError(f"digits split {split!r}: use 'train', 'test' or 'all'")
