"""Weight quantization: int8, symmetric, one scale per output channel."""

from __future__ import annotations

import numpy as np

from tvm_intsmooth.quantize.states import Const


def quantize_weight(weight: np.ndarray, out_axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (int8 weights, per-output-channel scales) for a float weight array."""
    moved = np.moveaxis(np.asarray(weight, np.float64), out_axis, 0)
    amax = np.abs(moved.reshape(moved.shape[0], -1)).max(axis=1)
    scale = np.where(amax > 0, amax / 127.0, 1.0)
    shape = [1] * weight.ndim
    shape[out_axis] = -1
    q = np.clip(np.round(weight / scale.reshape(shape)), -127, 127).astype(np.int8)
    return q, scale


def const_weight(const: Const, out_axis: int) -> tuple[np.ndarray, np.ndarray]:
    """The int8 weights of a constant: the QDQ model's own when they are exact, else ours."""
    if const.q is not None and const.q.dtype == np.int8:
        moved = np.moveaxis(const.qscale, out_axis, 0).reshape(const.qscale.shape[out_axis], -1)
        if np.all(moved == moved[:, :1]):
            return const.q, moved[:, 0].astype(np.float64)
    return quantize_weight(const.value, out_axis)
