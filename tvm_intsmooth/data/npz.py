"""The project's data file format: an ``.npz`` holding ``x`` and ``y``.

``x`` is a uint8 array N x C x H x W of pixels (0..255 stand for 0..1), ``y`` an integer array of
N non-negative class labels.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from tvm_intsmooth.errors import DataError


def validate(x: np.ndarray, y: np.ndarray, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Check an (images, labels) pair and return it as ``(uint8 x, int64 y)``.

    ``source`` names where the arrays came from, for the error message.
    """
    if x.dtype != np.uint8:
        raise DataError(f"{source}: x has dtype {x.dtype}, expected uint8 pixels 0..255")
    if x.ndim != 4:
        raise DataError(f"{source}: x has shape {x.shape}, expected rank 4 (N x C x H x W)")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(
            f"{source}: y has shape {y.shape} and dtype {y.dtype}, expected a 1-D integer array"
        )
    if y.shape[0] != x.shape[0]:
        raise DataError(f"{source}: x holds {x.shape[0]} images but y holds {y.shape[0]} labels")
    if y.size and y.min() < 0:
        raise DataError(f"{source}: y holds a negative label ({y.min()}); labels must be >= 0")
    return x, y.astype(np.int64)


def load_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Load ``(x uint8 N x C x H x W, y int64 N)`` from an .npz, validating keys, dtypes, shapes."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such data file")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in ("x", "y") if key not in data.files]
            if missing:
                raise DataError(
                    f"{path}: missing array(s) {', '.join(missing)}; the file holds "
                    f"{sorted(data.files)}, expected 'x' (uint8 images) and 'y' (labels)"
                )
            x, y = data["x"], data["y"]
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: not a readable .npz file ({err})") from err
    return validate(x, y, str(path))


def save_npz(path: str | Path, x: np.ndarray, y: np.ndarray) -> None:
    """Write images and labels to a compressed .npz in the project's format (validated first)."""
    x, y = validate(np.asarray(x), np.asarray(y), str(path))
    np.savez_compressed(path, x=x, y=y)
