"""CIFAR-10 from the standard "python version" batch files.

The folder (or its ``cifar-10-batches-py`` subfolder) holds ``data_batch_1`` .. ``data_batch_5``
and ``test_batch``: pickled dicts with ``b"data"``, uint8 N x 3072 (1024 red, 1024 green, 1024
blue values per image, rows top to bottom), and ``b"labels"``, N ints 0..9. The files are read
with a restricted unpickler that only rebuilds numpy arrays, lists and plain values, so a
tampered file cannot run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from tvm_intsmooth.errors import DataError

CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
_SPLIT_FILES = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _batch_folder(directory: Path) -> Path:
    nested = directory / "cifar-10-batches-py"
    return nested if nested.is_dir() else directory


def read_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 batch file as ``(x uint8 N x 3 x 32 x 32, y int64 N)``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{path}: CIFAR-10 batch file not found; name the folder that holds data_batch_1..5 "
            "and test_batch (the 'python version' of CIFAR-10)"
        )
    try:
        with path.open("rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise DataError(f"{path}: not a readable CIFAR-10 batch ({err}); truncated?") from err
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise DataError(f"{path}: expected a dict with b'data' and b'labels', found {keys}")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(
            f"{path}: b'data' has shape {data.shape} and dtype {data.dtype}, "
            "expected uint8 N x 3072"
        )
    if labels.ndim != 1 or labels.shape[0] != data.shape[0]:
        raise DataError(
            f"{path}: {data.shape[0]} images but {labels.size} labels; the file is corrupt"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
        raise DataError(f"{path}: labels outside 0..9 ({labels.min()}..{labels.max()})")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def load_cifar10(directory: str | Path, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Load a CIFAR-10 split (``"train"``: 50,000 images, ``"test"``: 10,000) from ``directory``."""
    if split not in _SPLIT_FILES:
        raise DataError(f"CIFAR-10 split {split!r}: use 'train' or 'test'")
    folder = _batch_folder(Path(directory))
    parts = [read_batch(folder / name) for name in _SPLIT_FILES[split]]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
