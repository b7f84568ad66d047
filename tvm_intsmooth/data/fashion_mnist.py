"""Fashion-MNIST from its IDX files.

The files are the four published by Zalando Research (``train-images-idx3-ubyte.gz`` and so on),
gzip-compressed or not. By default they are read from where the Debian package
``dataset-fashion-mnist`` installs them.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from tvm_intsmooth.errors import DataError

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_PREFIX = {"train": "train", "test": "t10k"}
_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension


def _find(directory: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    raise DataError(
        f"{directory / (stem + '.gz')}: Fashion-MNIST file not found (nor without .gz); "
        "install the Debian package dataset-fashion-mnist or name the folder that holds the "
        "IDX files"
    )


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise DataError(f"{path}: cannot read the file ({err}); it may be truncated") from err


def read_idx(path: str | Path, magic: int) -> np.ndarray:
    """Read an unsigned-byte IDX file (optionally gzip-compressed) into a uint8 array.

    ``magic`` is the expected magic number (0x801 for labels, 0x803 for images). A wrong magic
    number or a payload shorter or longer than its header says raises :class:`DataError`.
    """
    path = Path(path)
    raw = _read_bytes(path)
    ndim = magic & 0xFF
    header_len = 4 + 4 * ndim
    found = int.from_bytes(raw[:4], "big")
    if len(raw) >= 4 and found != magic:
        raise DataError(
            f"{path}: magic number {found:#010x}, expected {magic:#010x}; "
            "is this the right IDX file (images vs labels)?"
        )
    if len(raw) < header_len:
        raise DataError(f"{path}: {len(raw)} bytes, too short for an IDX header; truncated?")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    payload = len(raw) - header_len
    if payload != expected:
        raise DataError(
            f"{path}: header promises {expected} bytes of data for shape {shape}, file has "
            f"{payload}; the file is truncated or corrupt"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(shape).copy()


def load_fashion_mnist(
    split: str = "test", directory: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Load a Fashion-MNIST split as ``(x uint8 N x 1 x 28 x 28, y int64 N)``.

    ``split`` is ``"train"`` (60,000 images) or ``"test"`` (10,000); ``directory`` defaults to
    the Debian package's ``/usr/share/datasets/fashion-mnist``.
    """
    if split not in _PREFIX:
        raise DataError(f"Fashion-MNIST split {split!r}: use 'train' or 'test'")
    directory = DEFAULT_DIR if directory is None else Path(directory)
    prefix = _PREFIX[split]
    images_path = _find(directory, f"{prefix}-images-idx3-ubyte")
    labels_path = _find(directory, f"{prefix}-labels-idx1-ubyte")
    images = read_idx(images_path, _IMAGES_MAGIC)
    labels = read_idx(labels_path, _LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{images_path} holds {images.shape[0]} images but {labels_path} holds "
            f"{labels.shape[0]} labels; the two files do not belong together"
        )
    if labels.size and labels.max() >= len(CLASS_NAMES):
        raise DataError(f"{labels_path}: label {labels.max()} is out of range 0..9")
    return images[:, None, :, :], labels.astype(np.int64)
