"""Dataset specs, subsets, the Fashion-MNIST geometry helpers and the bundled evaluation files."""

from pathlib import Path

import numpy as np
import pytest

from tvm_intsmooth.data import (
    fashion_mnist_32,
    load_dataset,
    make_bundled_fashion_mnist,
    pad_to_32,
    save_npz,
    subset,
    to_three_channels,
)
from tvm_intsmooth.data.fashion_mnist import DEFAULT_DIR
from tvm_intsmooth.errors import DataError

ASSETS = Path(__file__).resolve().parents[1] / "tvm_intsmooth" / "assets" / "data"
HAVE_FASHION = (DEFAULT_DIR / "t10k-images-idx3-ubyte.gz").exists()


def test_subset_matches_cohen_skip():
    x = np.arange(100, dtype=np.uint8).reshape(100, 1, 1, 1)
    y = np.arange(100)
    # Cohen's certify.py: keep i with i % skip == 0, here also at most max_count of them.
    _, got = subset(x, y, skip=20)
    np.testing.assert_array_equal(got, [0, 20, 40, 60, 80])
    _, got = subset(x, y, skip=20, max_count=2)
    np.testing.assert_array_equal(got, [0, 20])
    _, got = subset(x, y, skip=30, start=5)
    np.testing.assert_array_equal(got, [5, 35, 65, 95])
    with pytest.raises(DataError, match="skip=0"):
        subset(x, y, skip=0)


def test_pad_and_channels():
    x = np.arange(2 * 28 * 28, dtype=np.int64).reshape(2, 1, 28, 28).astype(np.uint8)
    padded = pad_to_32(x)
    assert padded.shape == (2, 1, 32, 32)
    np.testing.assert_array_equal(padded[:, :, 2:30, 2:30], x)
    assert padded[:, :, :2].max() == 0 and padded[:, :, :, 30:].max() == 0
    three = to_three_channels(padded)
    assert three.shape == (2, 3, 32, 32)
    for c in range(3):
        np.testing.assert_array_equal(three[:, c], padded[:, 0])
    np.testing.assert_array_equal(fashion_mnist_32(x), three)
    with pytest.raises(DataError, match="28 x 28"):
        pad_to_32(padded)


def test_npz_spec_and_unknown_specs(tmp_path):
    x = np.arange(40, dtype=np.uint8).reshape(10, 1, 2, 2)
    save_npz(tmp_path / "d.npz", x, np.arange(10) % 3)
    got_x, got_y = load_dataset(str(tmp_path / "d.npz"), skip=3)
    np.testing.assert_array_equal(got_x, x[::3])
    np.testing.assert_array_equal(got_y, [0, 0, 0, 0])
    with pytest.raises(DataError, match="not an .npz path nor a known dataset"):
        load_dataset("imagenet")
    with pytest.raises(DataError, match="cifar10:DIR"):
        load_dataset("cifar10")


@pytest.mark.skipif(not HAVE_FASHION, reason="dataset-fashion-mnist not installed")
def test_fashion_mnist32_spec():
    x, y = load_dataset("fashion-mnist32", max_count=3)
    x28, y28 = load_dataset("fashion-mnist", max_count=3)
    assert x.shape == (3, 3, 32, 32)
    np.testing.assert_array_equal(x[:, 1, 2:30, 2:30], x28[:, 0])
    np.testing.assert_array_equal(y, y28)


@pytest.mark.skipif(not HAVE_FASHION, reason="dataset-fashion-mnist not installed")
def test_bundled_files_are_every_20th_test_image(tmp_path):
    written = make_bundled_fashion_mnist(tmp_path)
    assert [p.name for p in written] == [
        "fashion_mnist_test500.npz",
        "fashion_mnist32_test500.npz",
    ]
    x, y = load_dataset("fashion-mnist", skip=20)
    for name, expected in [
        ("fashion_mnist_test500.npz", x),
        ("fashion_mnist32_test500.npz", fashion_mnist_32(x)),
    ]:
        for folder in (tmp_path, ASSETS):
            got_x, got_y = load_dataset(str(folder / name))
            assert got_x.shape[0] == 500
            np.testing.assert_array_equal(got_x, expected)
            np.testing.assert_array_equal(got_y, y)
