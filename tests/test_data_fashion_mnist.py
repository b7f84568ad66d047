"""Fashion-MNIST IDX loading: synthetic files written here, and the real test set."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from tvm_intsmooth.data import load_dataset
from tvm_intsmooth.data.fashion_mnist import DEFAULT_DIR, load_fashion_mnist
from tvm_intsmooth.errors import DataError


def _idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_set(folder: Path, prefix: str, x: np.ndarray, y: np.ndarray, gz: bool) -> None:
    for stem, payload in (
        (f"{prefix}-images-idx3-ubyte", _idx_bytes(x, 0x803)),
        (f"{prefix}-labels-idx1-ubyte", _idx_bytes(y, 0x801)),
    ):
        if gz:
            (folder / (stem + ".gz")).write_bytes(gzip.compress(payload))
        else:
            (folder / stem).write_bytes(payload)


@pytest.fixture
def small_set():
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (7, 28, 28), dtype=np.uint8), rng.integers(0, 10, 7, dtype=np.uint8)


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("split,prefix", [("train", "train"), ("test", "t10k")])
def test_round_trip(tmp_path, small_set, gz, split, prefix):
    x, y = small_set
    _write_set(tmp_path, prefix, x, y, gz)
    got_x, got_y = load_fashion_mnist(split, tmp_path)
    assert got_x.dtype == np.uint8 and got_x.shape == (7, 1, 28, 28)
    assert got_y.dtype == np.int64
    np.testing.assert_array_equal(got_x[:, 0], x)
    np.testing.assert_array_equal(got_y, y)


def test_wrong_magic_names_file(tmp_path, small_set):
    x, y = small_set
    _write_set(tmp_path, "t10k", x, y, gz=True)
    # Labels written where the images belong: magic 0x801 instead of 0x803.
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(y, 0x801)))
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz.*magic number"):
        load_fashion_mnist("test", tmp_path)


def test_count_mismatch(tmp_path, small_set):
    x, y = small_set
    _write_set(tmp_path, "t10k", x, y[:5], gz=False)
    with pytest.raises(DataError, match="7 images but .* 5 labels"):
        load_fashion_mnist("test", tmp_path)


def test_truncated_payload(tmp_path, small_set):
    x, y = small_set
    _write_set(tmp_path, "t10k", x, y, gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.*truncated"):
        load_fashion_mnist("test", tmp_path)


def test_truncated_gzip(tmp_path, small_set):
    x, y = small_set
    _write_set(tmp_path, "t10k", x, y, gz=True)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz"):
        load_fashion_mnist("test", tmp_path)


def test_missing_file_and_bad_split(tmp_path):
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz.*not found"):
        load_fashion_mnist("test", tmp_path)
    with pytest.raises(DataError, match="split 'valid'"):
        load_fashion_mnist("valid", tmp_path)


@pytest.mark.skipif(
    not (DEFAULT_DIR / "t10k-images-idx3-ubyte.gz").exists(),
    reason="Debian package dataset-fashion-mnist not installed",
)
def test_real_test_set():
    x, y = load_fashion_mnist("test")
    assert x.shape == (10000, 1, 28, 28) and x.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(y), np.full(10, 1000))
    # First labels of the published t10k set: ankle boot, pullover, trouser, trouser, shirt.
    np.testing.assert_array_equal(y[:5], [9, 2, 1, 1, 6])
    assert x.min() == 0 and x.max() == 255


def test_dataset_spec_with_folder(tmp_path, small_set):
    x, y = small_set
    _write_set(tmp_path, "train", x, y, gz=True)
    got_x, got_y = load_dataset(f"fashion-mnist32:{tmp_path}", split="train", skip=2)
    assert got_x.shape == (4, 3, 32, 32)
    np.testing.assert_array_equal(got_x[:, 2, 2:30, 2:30], x[::2])
    np.testing.assert_array_equal(got_y, y[::2])
