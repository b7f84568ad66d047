"""The project's .npz data format."""

import numpy as np
import pytest

from tvm_intsmooth.data.npz import load_npz, save_npz
from tvm_intsmooth.errors import DataError


def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (5, 3, 4, 6), dtype=np.uint8)
    y = np.array([0, 9, 3, 3, 101], dtype=np.int32)
    path = tmp_path / "d.npz"
    save_npz(path, x, y)
    got_x, got_y = load_npz(path)
    np.testing.assert_array_equal(got_x, x)
    np.testing.assert_array_equal(got_y, y)
    assert got_x.dtype == np.uint8 and got_y.dtype == np.int64


@pytest.mark.parametrize(
    "arrays,message",
    [
        ({"x": np.zeros((2, 1, 3, 3), np.uint8)}, "missing array.*y"),
        ({"x": np.zeros((2, 1, 3, 3), np.float32), "y": np.zeros(2, int)}, "dtype float32"),
        ({"x": np.zeros((2, 3, 3), np.uint8), "y": np.zeros(2, int)}, "expected rank 4"),
        ({"x": np.zeros((2, 1, 3, 3), np.uint8), "y": np.zeros(3, int)}, "2 images but y holds 3"),
        ({"x": np.zeros((2, 1, 3, 3), np.uint8), "y": np.array([0, -1])}, "negative label"),
        ({"x": np.zeros((2, 1, 3, 3), np.uint8), "y": np.array([0.0, 1.0])}, "1-D integer"),
    ],
)
def test_invalid_files_name_the_file(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=f"bad.npz.*{message}"):
        load_npz(path)


def test_not_an_npz(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(DataError, match="junk.npz.*not a readable"):
        load_npz(path)
    with pytest.raises(DataError, match="missing.npz: no such data file"):
        load_npz(tmp_path / "missing.npz")


def test_save_refuses_invalid_arrays(tmp_path):
    with pytest.raises(DataError, match="dtype int64"):
        save_npz(tmp_path / "o.npz", np.zeros((1, 1, 2, 2), np.int64), np.zeros(1, int))
    assert not (tmp_path / "o.npz").exists()
