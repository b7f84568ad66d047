"""scikit-learn digits as uint8 images."""

import numpy as np
import pytest
from sklearn.datasets import load_digits as sklearn_digits

from tvm_intsmooth.data import load_dataset
from tvm_intsmooth.data.digits import load_digits
from tvm_intsmooth.errors import DataError


def test_shapes_and_split():
    x_train, y_train = load_digits("train")
    x_test, y_test = load_digits("test")
    assert x_train.shape == (1300, 1, 8, 8) and x_test.shape == (497, 1, 8, 8)
    assert x_train.dtype == np.uint8 and y_test.dtype == np.int64
    reference = sklearn_digits()
    np.testing.assert_array_equal(np.concatenate([y_train, y_test]), reference.target)


def test_rescaling_by_hand():
    x, _ = load_dataset("digits", split="all")
    raw = sklearn_digits().images[:, None]
    # 0 -> 0, 16 -> 255, 4 -> 63.75 -> 64, 8 -> 127.5 -> 128 (numpy rounds half to even).
    for value, pixel in [(0, 0), (16, 255), (4, 64), (8, 128), (1, 16)]:
        assert (raw == value).any()
        assert np.all(x[raw == value] == pixel)


def test_bad_split():
    with pytest.raises(DataError, match="digits split 'val'"):
        load_digits("val")
    with pytest.raises(DataError, match="takes no path"):
        load_dataset("digits:/tmp")
