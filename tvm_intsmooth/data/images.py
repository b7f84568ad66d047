"""Validation of integer pixel images against a model's input shape."""

from __future__ import annotations

import numpy as np

from tvm_intsmooth.errors import DataError


def check_images(images: np.ndarray, input_shape: tuple[int, ...], what: str) -> np.ndarray:
    """Validate a batch of integer pixel images against a model's input shape."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise DataError(f"{what}: images must be uint8 pixels 0..255, got dtype {images.dtype}.")
    if images.shape[1:] != tuple(input_shape) or images.ndim != len(input_shape) + 1:
        raise DataError(
            f"{what}: images have shape {images.shape}, but the model takes "
            f"N x {' x '.join(map(str, input_shape))}."
        )
    if len(images) == 0:
        raise DataError(f"{what}: no images.")
    return images
