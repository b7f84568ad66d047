"""Caltech-101 from its standard folder of per-class JPEG folders.

The folder (or its ``101_ObjectCategories`` subfolder) holds one subfolder per class with ``.jpg``
images. Classes are numbered in sorted order of their folder names; ``BACKGROUND_Google`` is left
out unless asked for. Each image is converted to RGB, resized (bilinear) so that its shorter side
is ``size`` and centre-cropped to ``size`` x ``size``.

The set has no official split. This module fixes one: within each class, with the file names
sorted, every 5th image (positions 0, 5, 10, ...) is ``"test"`` and the others are ``"train"``;
``"all"`` gives every image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tvm_intsmooth.errors import DataError

BACKGROUND = "BACKGROUND_Google"
TEST_EVERY = 5


def _category_folder(directory: Path) -> Path:
    if not directory.is_dir():
        raise DataError(f"{directory}: no such folder; name the Caltech-101 folder")
    nested = directory / "101_ObjectCategories"
    return nested if nested.is_dir() else directory


def list_images(
    directory: str | Path, split: str = "test", include_background: bool = False
) -> tuple[list[Path], np.ndarray, list[str]]:
    """The image files of a split, their labels, and the class names (sorted folder names)."""
    if split not in ("train", "test", "all"):
        raise DataError(f"Caltech-101 split {split!r}: use 'train', 'test' or 'all'")
    root = _category_folder(Path(directory))
    classes = sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and (include_background or p.name != BACKGROUND)
    )
    if not classes:
        raise DataError(f"{root}: no class folders found (expected 101_ObjectCategories/<class>/)")
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        images = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
        for position, image in enumerate(images):
            is_test = position % TEST_EVERY == 0
            if split == "all" or (split == "test") == is_test:
                files.append(image)
                labels.append(label)
    return files, np.asarray(labels, dtype=np.int64), classes


def load_image(path: str | Path, size: int) -> np.ndarray:
    """One image as uint8 3 x size x size: shorter side resized to ``size``, centre-cropped."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            width, height = image.size
            scale = size / min(width, height)
            new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
            image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
            left, top = (new_w - size) // 2, (new_h - size) // 2
            image = image.crop((left, top, left + size, top + size))
            return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).copy()
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise DataError(f"{path}: cannot decode the image ({err})") from err


def load_caltech101(
    directory: str | Path, split: str = "test", size: int = 224, include_background: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Load a Caltech-101 split as ``(x uint8 N x 3 x size x size, y int64 N)``."""
    if size < 1:
        raise DataError(f"Caltech-101 image size {size}: must be a positive number of pixels")
    files, labels, _ = list_images(directory, split, include_background)
    if not files:
        raise DataError(f"{directory}: no .jpg images in the {split!r} split")
    x = np.stack([load_image(f, size) for f in files])
    return x, labels
