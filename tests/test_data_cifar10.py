"""CIFAR-10 batch loading from python-version batch files written here."""

import os
import pickle

import numpy as np
import pytest

from tvm_intsmooth.data import load_dataset
from tvm_intsmooth.data.cifar10 import load_cifar10, read_batch
from tvm_intsmooth.errors import DataError


def _write_batch(path, data, labels):
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"x", b"labels": list(labels), b"data": data}, f, protocol=2)


def _write_set(folder, sizes=(3, 2, 4, 1, 2), test_size=5, seed=0):
    rng = np.random.default_rng(seed)
    batches = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name, n in zip(names, [*sizes, test_size], strict=True):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        _write_batch(folder / name, data, labels)
        batches[name] = (data, labels)
    return batches


def test_round_trip_pixel_layout(tmp_path):
    batches = _write_set(tmp_path)
    x, y = load_cifar10(tmp_path, "test")
    data, labels = batches["test_batch"]
    assert x.shape == (5, 3, 32, 32) and x.dtype == np.uint8 and y.dtype == np.int64
    # CIFAR-10 row layout: 1024 red values, then green, then blue, each row-major 32 x 32.
    for i, c, r, col in [(0, 0, 0, 0), (1, 1, 5, 7), (4, 2, 31, 31), (2, 2, 0, 31)]:
        assert x[i, c, r, col] == data[i, c * 1024 + r * 32 + col]
    np.testing.assert_array_equal(y, labels)


def test_train_concatenates_batches_in_order(tmp_path):
    nested = tmp_path / "cifar-10-batches-py"
    nested.mkdir()
    batches = _write_set(nested)
    x, y = load_dataset(f"cifar10:{tmp_path}", split="train")
    names = [f"data_batch_{i}" for i in range(1, 6)]
    expected = np.concatenate([batches[n][0] for n in names]).reshape(-1, 3, 32, 32)
    np.testing.assert_array_equal(x, expected)
    np.testing.assert_array_equal(y, sum((batches[n][1] for n in names), []))


def test_missing_keys(tmp_path):
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8)}, f)
    with pytest.raises(DataError, match="test_batch.*b'labels'"):
        load_cifar10(tmp_path, "test")


def test_truncated_pickle(tmp_path):
    _write_set(tmp_path)
    path = tmp_path / "test_batch"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="test_batch.*truncated"):
        read_batch(path)


def test_label_count_mismatch_and_bad_shape(tmp_path):
    _write_batch(tmp_path / "a", np.zeros((3, 3072), np.uint8), [1, 2])
    with pytest.raises(DataError, match="3 images but 2 labels"):
        read_batch(tmp_path / "a")
    _write_batch(tmp_path / "b", np.zeros((3, 3000), np.uint8), [1, 2, 3])
    with pytest.raises(DataError, match="expected uint8 N x 3072"):
        read_batch(tmp_path / "b")


def test_missing_file_names_it(tmp_path):
    with pytest.raises(DataError, match="data_batch_1.*not found"):
        load_cifar10(tmp_path, "train")


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": _RunsCode(), b"labels": []}, f)
    with pytest.raises(DataError, match="refusing to load"):
        load_cifar10(tmp_path, "test")
