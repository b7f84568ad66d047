"""Numpy reference of the whole smoothed function: same PRNG, same thresholds, same graph."""

from __future__ import annotations

import numpy as np

from tvm_intsmooth.reference import interpret
from tvm_intsmooth.smoothing.noise_sampler import sample_noise_numpy


def _words(lo, hi) -> int:
    return int(lo) | (int(hi) << 32)


def reference_counts(
    smoothed, pixels: np.ndarray, n: int, seed: int, stream: int = 0
) -> np.ndarray:
    """Vote counts of ``n`` noisy samples, evaluated by the numpy integer interpreter.

    The noise ``call_tir`` is evaluated by :func:`sample_noise_numpy`; everything else by
    :func:`tvm_intsmooth.reference.interpret` on ``smoothed.mod`` (a :class:`SmoothedModel`).
    """
    batch, table = smoothed.batch, smoothed.table
    coords = int(np.prod(smoothed.input_shape))

    def noise(key, ctr):
        return sample_noise_numpy(
            table, _words(*key), _words(ctr[0], ctr[1]), int(ctr[2]), batch, coords
        )

    externs = {"intsmooth_rounded_gaussian_noise": noise}
    pixels = np.asarray(pixels, np.uint8).reshape(1, *smoothed.input_shape)
    seed_words = np.array([seed & 0xFFFFFFFF, seed >> 32], np.int64)
    counts = np.zeros(smoothed.num_classes, np.int64)
    for offset in range(0, n, batch):
        counter = np.array([stream & 0xFFFFFFFF, stream >> 32, offset], np.int64)
        valid = np.array([min(batch, n - offset)], np.int64)
        counts += interpret(smoothed.mod, pixels, seed_words, counter, valid, externs=externs)
    return counts
