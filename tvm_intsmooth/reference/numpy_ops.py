"""Numpy implementations of the 2-D NCHW operators, exact for integer inputs.

Written from the operators' definitions (not from TVM's lowering), so that they can serve as an
independent reference. Integer inputs are computed in int64, where no sum of int8/int16 products
of a classifier layer can overflow; float inputs are computed in float64.
"""

from __future__ import annotations

import numpy as np


def _wide(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64 if x.dtype.kind == "f" else np.int64)


def pad2d(x: np.ndarray, padding: tuple[int, int, int, int], value) -> np.ndarray:
    """Pad the last two axes of an NCHW array by (top, left, bottom, right) with ``value``."""
    top, left, bottom, right = padding
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)


def _windows(x: np.ndarray, kh: int, kw: int, strides, dilation, out_hw) -> np.ndarray:
    """(N, C, Ho, Wo, kh, kw) view of the sliding windows of a padded NCHW array."""
    sh, sw = strides
    dh, dw = dilation
    ho, wo = out_hw
    n, c = x.shape[:2]
    sn, sc, sy, sx = x.strides
    return np.lib.stride_tricks.as_strided(
        x, (n, c, ho, wo, kh, kw), (sn, sc, sy * sh, sx * sw, sy * dh, sx * dw), writeable=False
    )


def _out_size(size: int, k: int, stride: int, dilation: int, ceil_mode: bool = False) -> int:
    span = size - dilation * (k - 1) - 1
    return (-(-span // stride) if ceil_mode else span // stride) + 1


def conv2d(x, w, strides=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1) -> np.ndarray:
    """NCHW x OIHW convolution with zero padding and groups."""
    x, w = _wide(x), _wide(w)
    xp = pad2d(x, padding, 0)
    o, cin_g, kh, kw = w.shape
    out_hw = tuple(
        _out_size(xp.shape[2 + i], w.shape[2 + i], strides[i], dilation[i]) for i in (0, 1)
    )
    win = _windows(xp, kh, kw, strides, dilation, out_hw)
    out_g = o // groups
    parts = [
        np.einsum(
            "nchwyx,ocyx->nohw", win[:, g * cin_g : (g + 1) * cin_g], w[g * out_g : (g + 1) * out_g]
        )
        for g in range(groups)
    ]
    return np.concatenate(parts, axis=1)


def pool2d(
    x, kind, pool_size, strides, padding, dilation=(1, 1), ceil_mode=False, count_include_pad=False
) -> np.ndarray:
    """Max or average pooling over NCHW; max pads with the dtype's minimum."""
    kh, kw = pool_size
    if kind == "max":
        low = np.iinfo(x.dtype).min if x.dtype.kind in "iu" else -np.inf
        xp = pad2d(x, padding, low)
    else:
        xp = pad2d(_wide(x), padding, 0)
    out_hw = tuple(
        _out_size(xp.shape[2 + i], pool_size[i], strides[i], dilation[i], ceil_mode) for i in (0, 1)
    )
    need = [(out_hw[i] - 1) * strides[i] + dilation[i] * (pool_size[i] - 1) + 1 for i in (0, 1)]
    extra = [max(0, need[i] - xp.shape[2 + i]) for i in (0, 1)]
    if any(extra):
        xp = pad2d(xp, (0, 0, extra[0], extra[1]), low if kind == "max" else 0)
    win = _windows(xp, kh, kw, strides, dilation, out_hw)
    if kind == "max":
        return win.max(axis=(4, 5))
    if any(padding) and not count_include_pad:
        raise NotImplementedError("average pooling that excludes padding")
    return win.sum(axis=(4, 5)) / (kh * kw)
