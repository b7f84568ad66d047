"""Caltech-101 folder loading from JPEG folders written here."""

import numpy as np
import pytest
from PIL import Image

from tvm_intsmooth.data import load_dataset
from tvm_intsmooth.data.caltech101 import list_images, load_caltech101
from tvm_intsmooth.errors import DataError


def _save_jpeg(path, array):
    Image.fromarray(array).save(path, quality=100, subsampling=0)


def _make_tree(root, counts):
    """Class folders (given out of order) with uniform-colour images; returns their colours."""
    colours = {}
    rng = np.random.default_rng(0)
    for name, n in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            colour = rng.integers(0, 256, 3, dtype=np.uint8)
            _save_jpeg(root / name / f"image_{i:04d}.jpg", np.tile(colour, (12, 16, 1)))
            colours[(name, i)] = colour
    return colours


def test_class_order_split_and_background(tmp_path):
    root = tmp_path / "101_ObjectCategories"
    _make_tree(root, {"zebra": 6, "BACKGROUND_Google": 2, "ant": 3})
    files, labels, classes = list_images(tmp_path, "test")
    assert classes == ["ant", "zebra"]
    # Every 5th image of each class (positions 0, 5, ...) is test.
    assert [f.name for f in files] == ["image_0000.jpg", "image_0000.jpg", "image_0005.jpg"]
    np.testing.assert_array_equal(labels, [0, 1, 1])
    _, train_labels, _ = list_images(tmp_path, "train")
    np.testing.assert_array_equal(train_labels, [0, 0, 1, 1, 1, 1])
    _, all_labels, with_bg = list_images(tmp_path, "all", include_background=True)
    assert with_bg == ["BACKGROUND_Google", "ant", "zebra"] and len(all_labels) == 11


def test_uniform_images_keep_their_colour(tmp_path):
    colours = _make_tree(tmp_path, {"a": 2, "b": 3})
    x, y = load_dataset(f"caltech101:{tmp_path}:8", split="all")
    assert x.shape == (5, 3, 8, 8) and x.dtype == np.uint8
    np.testing.assert_array_equal(y, [0, 0, 1, 1, 1])
    expected = [colours[("a", 0)], colours[("a", 1)], *(colours[("b", i)] for i in range(3))]
    for image, colour in zip(x, expected, strict=True):
        # JPEG at quality 100 keeps a flat colour within a couple of levels.
        assert np.abs(image.astype(int) - colour.astype(int)[:, None, None]).max() <= 2


def test_resize_shorter_side_then_centre_crop(tmp_path):
    # 30 wide x 10 high: left and right thirds red, middle third blue.
    image = np.zeros((10, 30, 3), np.uint8)
    image[:, :10, 0] = 255
    image[:, 20:, 0] = 255
    image[:, 10:20, 2] = 255
    (tmp_path / "c").mkdir()
    _save_jpeg(tmp_path / "c" / "wide.jpg", image)
    # Shorter side 10 -> 5: the image becomes 15 x 5 and the crop keeps the middle 5 x 5 (blue).
    x, _ = load_caltech101(tmp_path, "all", size=5)
    assert x.shape == (1, 3, 5, 5)
    assert x[0, 2].min() >= 200 and x[0, 0].max() <= 60


def test_grayscale_becomes_rgb(tmp_path):
    (tmp_path / "g").mkdir()
    Image.fromarray(np.full((6, 6), 77, np.uint8)).save(tmp_path / "g" / "gray.jpg", quality=100)
    x, _ = load_caltech101(tmp_path, "all", size=6)
    assert x.shape == (1, 3, 6, 6)
    assert np.abs(x.astype(int) - 77).max() <= 1


def test_bad_files(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        load_caltech101(tmp_path / "missing")
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError, match="broken.jpg.*cannot decode"):
        load_caltech101(tmp_path, "all", size=4)
    with pytest.raises(DataError, match="split 'val'"):
        load_caltech101(tmp_path, "val")
