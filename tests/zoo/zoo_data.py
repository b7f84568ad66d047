"""The zoo's data: the bundled test images (tvm_intsmooth/assets/data), split into the 400 the
models are trained and calibrated on and the 100 held out for agreement."""

from __future__ import annotations

import numpy as np

from tvm_intsmooth.assets import ASSETS
from tvm_intsmooth.data import load_npz

TRAIN = 400
SIGMA = 0.25  # training noise and the smoothing's sigma, in [0, 1] pixel units


def zoo_data(file: str, upsample: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images N x C x H x W, labels) of a bundled file, upsampled by pixel repetition."""
    x, y = load_npz(ASSETS / "data" / file)
    if upsample > 1:
        x = x.repeat(upsample, axis=2).repeat(upsample, axis=3)
    return x, y


def noisy_held_out(x: np.ndarray, copies: int = 4, seed: int = 19) -> np.ndarray:
    """``copies`` rounded-Gaussian noisy copies (sigma * 255 pixel units, unclipped, int16) of
    every held-out image: what the smoothed classifier's base model sees."""
    held = x[TRAIN:].astype(np.int16)
    rng = np.random.default_rng(seed)
    noise = np.round(rng.normal(0, SIGMA * 255, (copies, *held.shape))).astype(np.int16)
    return (held[None] + noise).reshape(-1, *held.shape[1:])
