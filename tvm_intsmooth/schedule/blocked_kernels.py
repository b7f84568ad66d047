"""Tensor expressions and weight packing of the blocked (NCHW16c) integer kernels.

Activations are ``[B, C/16, H, W, 16]``: channel ``c`` lives at block ``c // 16``, lane ``c % 16``;
channel counts that are not multiples of 16 are padded with lanes that the next layer's weights
ignore (zero weights). Convolution weights are packed at compile time into the block of the
dot-product intrinsics, ``[K/16, C/16, KH, KW, 4, 16, 4]`` (16 output channels x 4 groups of 4
input channels), the form of ``topi.nn.conv2d_NCHWc_int8`` that MetaSchedule tensorizes.
Every kernel accumulates in int32 in any order: exact, since the accumulator's worst case is
checked to fit (see :mod:`tvm_intsmooth.schedule.blocked_layout`).
"""

from __future__ import annotations

import numpy as np
from tvm import te, tirx, topi

BLOCK = 16  # channels per activation block (and output channels per weight block)
INNER = 4  # input channels per dot-product group (vpdpbusd, sdot)
INPUT_INNER = 2  # input channels per group for 16-bit input pixels (vpmaddwd)
SHIFT = 128  # zero point of a shifted (possibly negative) int8 input as uint8

CONV_BLOCK_NAME = "conv2d_NCHWc_int8"  # topi's block name, looked up by the default schedule
DATA_MAX_ATTR = "intsmooth.data_max"  # block annotation: a bound on the conv's data
# The bounds an annotation is rounded up to. Intrinsics are exact below one of them (AVX2 and ARM
# uint8 kernels: 127), so rounding loses nothing, and a model calibrated on other data keeps the
# same PrimFuncs, hence the same tuned-database key.
DATA_MAX_CLASSES = (127, 255, 2**15 - 1, 2**31 - 1)


def blocks(channels: int) -> int:
    """Number of 16-channel blocks that hold ``channels`` channels."""
    return -(-channels // BLOCK)


def _pad_axis(a: np.ndarray, axis: int, size: int) -> np.ndarray:
    widths = [(0, 0)] * a.ndim
    widths[axis] = (0, size - a.shape[axis])
    return np.pad(a, widths)


def pack_conv_weight(weight: np.ndarray) -> np.ndarray:
    """OIHW int8 weights -> ``[K/16, C/16, KH, KW, 4, 16, 4]``, zero-padded channels."""
    k, c, kh, kw = weight.shape
    kb, cb = blocks(k), blocks(c)
    w = _pad_axis(_pad_axis(weight, 0, kb * BLOCK), 1, cb * BLOCK)
    w = w.reshape(kb, BLOCK, cb, BLOCK // INNER, INNER, kh, kw)
    return np.ascontiguousarray(w.transpose(0, 2, 5, 6, 3, 1, 4))


def input_block(channels: int) -> int:
    """Channel block of the network input: the channels rounded up to a multiple of
    ``INPUT_INNER`` (at most 16), so that a 3-channel image is padded to 4, not 16."""
    return min(BLOCK, -(-channels // INPUT_INNER) * INPUT_INNER)


def pack_input_conv_weight(weight: np.ndarray) -> np.ndarray:
    """OIHW int8 weights of the first conv -> ``[K/16, C/cb, KH, KW, cb/2, 16, 2]``."""
    k, c, kh, kw = weight.shape
    cb = input_block(c)
    kb, cblocks = blocks(k), -(-c // cb)
    w = _pad_axis(_pad_axis(weight, 0, kb * BLOCK), 1, cblocks * cb)
    w = w.reshape(kb, BLOCK, cblocks, cb // INPUT_INNER, INPUT_INNER, kh, kw)
    return np.ascontiguousarray(w.transpose(0, 2, 5, 6, 3, 1, 4))


def pack_depthwise_weight(weight: np.ndarray) -> np.ndarray:
    """Depthwise weights ``[C, 1, KH, KW]`` -> ``[C/16, KH, KW, 16]``."""
    c, _, kh, kw = weight.shape
    w = _pad_axis(weight[:, 0], 0, blocks(c) * BLOCK).reshape(blocks(c), BLOCK, kh, kw)
    return np.ascontiguousarray(w.transpose(0, 2, 3, 1))


def rows_pairs(channels: int, kernel_w: int) -> int:
    """Reduction pairs per kernel row of the first layer in the rows layout: the ``kernel_w x
    channels`` int16 values a kernel row reads are contiguous there, taken two at a time."""
    return -(-channels * kernel_w // INPUT_INNER)


def pack_rows_weight(weight: np.ndarray) -> np.ndarray:
    """OIHW int8 weights of the first conv -> ``[K/16, 1, KH, 1, P, 16, 2]``: per kernel row,
    the ``KW x C`` taps in the order of the rows layout (``kw``-major, then the channel),
    zero-padded to ``P`` pairs (:func:`rows_pairs`)."""
    k, c, kh, kw = weight.shape
    pairs = rows_pairs(c, kw)
    taps = weight.transpose(0, 2, 3, 1).reshape(k, kh, kw * c)  # [K, KH, KW*C]
    taps = _pad_axis(_pad_axis(taps, 2, pairs * INPUT_INNER), 0, blocks(k) * BLOCK)
    taps = taps.reshape(blocks(k), BLOCK, kh, pairs, INPUT_INNER)
    return np.ascontiguousarray(taps.transpose(0, 2, 3, 1, 4)[:, None, :, None])


def to_rows(x: te.Tensor, padding: tuple[int, int, int, int], extra: int) -> te.Tensor:
    """``[B, C, H, W]`` -> the rows layout of the first layer, ``[B, 1, H', 1, W' * C +
    extra]``: each padded image row with its pixels' channels side by side (NHWC), zero padding
    (spatial, and ``extra`` values after the row for the last tap pair). The row is the last
    axis, as the intrinsics' data operand must be."""
    b, c, h, w = x.shape
    channels, height, width = int(c), int(h), int(w)
    top, left, bottom, right = padding
    padded_w = width + left + right

    def value(n, one, y, zero, col):
        pixel, ch = col // channels, col % channels
        inside = tirx.all(
            y >= top,
            y < top + height,
            pixel >= left,
            pixel < left + width,
            col < padded_w * channels,
        )
        read = x[n, ch, y - top, pixel - left]
        return tirx.if_then_else(inside, read, tirx.const(0, x.dtype))

    shape = (b, 1, height + top + bottom, 1, padded_w * channels + extra)
    return te.compute(shape, value, name="to_rows")


def rows_extra(channels: int, kernel_w: int, stride: int, padded_w: int, out_w: int) -> int:
    """Values past the padded row that the last output pixel's last tap pair reads (0 or 1):
    :func:`to_rows` appends them (zeros; their weights are zero too)."""
    reach = (out_w - 1) * stride * channels + rows_pairs(channels, kernel_w) * INPUT_INNER
    return max(0, reach - padded_w * channels)


def conv_rows(data, kernel, strides, channels: int, out_w: int, data_max: int) -> te.Tensor:
    """The first layer in the rows layout (:func:`to_rows`, padded already) x
    :func:`pack_rows_weight` weights -> blocked int32 ``[B, K/16, OH, out_w, 16]``.

    The iteration space of :func:`conv_blocked` (so the same schedules and intrinsics serve
    it), with ``kw`` and ``ic_outer`` of extent 1 and the pairs of a kernel row as
    ``ic_f_inner``: output pixel ``x`` reads row values ``x * stride * C + 2 p + i``.
    """
    b, _, hp, _, _ = data.shape
    kb, _, kh, _, pairs, lanes, inner = (int(v) for v in kernel.shape)
    step = strides[1] * channels
    oh = (int(hp) - kh) // strides[0] + 1
    ry = te.reduce_axis((0, kh), name="kh")
    rx = te.reduce_axis((0, 1), name="kw")
    rc = te.reduce_axis((0, 1), name="ic_outer")
    rg = te.reduce_axis((0, pairs), name="ic_f_inner")
    ri = te.reduce_axis((0, inner), name="ic_s_inner")
    return te.compute(
        (b, kb, oh, out_w, lanes),
        lambda n, k, y, z, lane: te.sum(
            data[n, rc, y * strides[0] + ry, rx, z * step + rg * inner + ri].astype("int32")
            * kernel[k, rc, ry, rx, rg, lane, ri].astype("int32"),
            axis=[ry, rx, rc, rg, ri],
        ),
        name=CONV_BLOCK_NAME,
        attrs={DATA_MAX_ATTR: data_max_class(int(data_max))},
    )


def block_const(value: np.ndarray, channels: int) -> np.ndarray:
    """A constant broadcastable to ``[B, C, H, W]`` in the blocked layout (zero-padded lanes)."""
    if value.ndim == 0:
        return value
    a = value.reshape((1,) * (4 - value.ndim) + value.shape)
    if a.shape[1] == 1:
        return a.reshape(a.shape[0], 1, a.shape[2], a.shape[3], 1)
    a = _pad_axis(a, 1, blocks(channels) * BLOCK)
    a = a.reshape(a.shape[0], blocks(channels), BLOCK, a.shape[2], a.shape[3])
    return np.ascontiguousarray(a.transpose(0, 1, 3, 4, 2))


def compensation(weight: np.ndarray) -> np.ndarray:
    """``-128 * sum(w)`` per output channel, blocked: undoes the +128 shift of a signed input."""
    total = weight.astype(np.int64).reshape(weight.shape[0], -1).sum(axis=1)
    return block_const((-SHIFT * total).astype(np.int32).reshape(1, -1, 1, 1), weight.shape[0])


def to_blocked(x: te.Tensor, block: int = BLOCK) -> te.Tensor:
    """``[B, C, H, W]`` -> ``[B, C/block, H, W, block]``, padded lanes zero."""
    b, c, h, w = x.shape
    channels = int(c)

    def value(n, cb, y, z, ci):
        ch = cb * block + ci
        return tirx.if_then_else(ch < channels, x[n, ch, y, z], tirx.const(0, x.dtype))

    return te.compute((b, -(-channels // block), h, w, block), value, name="to_blocked")


def from_blocked(x: te.Tensor, channels: int, dtype: str) -> te.Tensor:
    """``[B, C/16, H, W, 16]`` -> ``[B, C, H, W]`` as ``dtype`` (values unchanged)."""
    b, _, h, w, _ = x.shape
    return te.compute(
        (b, channels, h, w),
        lambda n, c, y, z: x[n, c // BLOCK, y, z, c % BLOCK].astype(dtype),
        name="from_blocked",
    )


def shift_to_uint8(x: te.Tensor, padding: tuple[int, int, int, int]) -> te.Tensor:
    """Signed blocked int8 -> uint8 ``x + 128``, spatially padded with the shifted zero (128)."""
    top, left, bottom, right = padding
    b, cb, h, w, lanes = x.shape
    height, width = int(h), int(w)

    def value(n, c, y, z, ci):
        inside = tirx.all(y >= top, y < top + height, z >= left, z < left + width)
        shifted = (x[n, c, y - top, z - left, ci].astype("int16") + SHIFT).astype("uint8")
        return tirx.if_then_else(inside, shifted, tirx.const(SHIFT, "uint8"))

    shape = (b, cb, height + top + bottom, width + left + right, lanes)
    return te.compute(shape, value, name="shift_to_uint8")


def data_max_class(data_max: int) -> int:
    """The smallest of :data:`DATA_MAX_CLASSES` that is at least ``data_max``."""
    return next(bound for bound in DATA_MAX_CLASSES if data_max <= bound)


def conv_blocked(data, kernel, strides, padding, dilation, data_max: int) -> te.Tensor:
    """Blocked data x packed int8 weights -> blocked int32.

    The compute of ``topi.nn.conv2d_NCHWc_int8`` (the form the dot-product intrinsics tensorize):
    spatial ``n, oc_chunk, oh, ow, oc_block``, reduction ``kh, kw, ic_outer, ic_group, ic_inner``
    with ``ic_inner`` the kernel's last axis (4 for 8-bit data, 2 for the int16 input). The block
    is annotated with a bound on its data (``data_max`` rounded up by :func:`data_max_class`), so
    that a schedule can refuse an intrinsic that is exact only below it (AVX2 ``vpmaddubsw``: 127).
    """
    b, _, h, w, _ = data.shape
    kb, cb, kh, kw, groups, lanes, inner = (int(v) for v in kernel.shape)
    top, left, bottom, right = padding
    oh = _out_size(h, top + bottom, kh, strides[0], dilation[0])
    ow = _out_size(w, left + right, kw, strides[1], dilation[1])
    pad = _padded(data, padding, (2, 3))
    ry = te.reduce_axis((0, kh), name="kh")
    rx = te.reduce_axis((0, kw), name="kw")
    rc = te.reduce_axis((0, cb), name="ic_outer")
    rg = te.reduce_axis((0, groups), name="ic_f_inner")
    ri = te.reduce_axis((0, inner), name="ic_s_inner")
    return te.compute(
        (b, kb, oh, ow, lanes),
        lambda n, k, y, z, lane: te.sum(
            pad[
                n,
                rc,
                y * strides[0] + ry * dilation[0],
                z * strides[1] + rx * dilation[1],
                rg * inner + ri,
            ].astype("int32")
            * kernel[k, rc, ry, rx, rg, lane, ri].astype("int32"),
            axis=[ry, rx, rc, rg, ri],
        ),
        name=CONV_BLOCK_NAME,
        attrs={DATA_MAX_ATTR: data_max_class(int(data_max))},
    )


def _padded(data: te.Tensor, padding, spatial_axes: tuple[int, int]) -> te.Tensor:
    top, left, bottom, right = padding
    if not any(padding):
        return data
    before = [0] * len(data.shape)
    after = [0] * len(data.shape)
    before[spatial_axes[0]], before[spatial_axes[1]] = top, left
    after[spatial_axes[0]], after[spatial_axes[1]] = bottom, right
    return topi.nn.pad(data, before, after, name="data_pad")


def _out_size(size, pad_sum: int, kernel: int, stride: int, dilation: int) -> int:
    return (int(size) + pad_sum - (kernel - 1) * dilation - 1) // stride + 1


def conv_depthwise_blocked(data, kernel, strides, padding, dilation) -> te.Tensor:
    """Blocked data x ``[C/16, KH, KW, 16]`` depthwise weights -> blocked int32."""
    b, cb, h, w, lanes = data.shape
    _, kh, kw, _ = (int(v) for v in kernel.shape)
    top, left, bottom, right = padding
    oh = _out_size(h, top + bottom, kh, strides[0], dilation[0])
    ow = _out_size(w, left + right, kw, strides[1], dilation[1])
    pad = _padded(data, padding, (2, 3))
    ry = te.reduce_axis((0, kh), name="ry")
    rx = te.reduce_axis((0, kw), name="rx")
    return te.compute(
        (b, cb, oh, ow, lanes),
        lambda n, c, y, z, ci: te.sum(
            pad[
                n, c, y * strides[0] + ry * dilation[0], z * strides[1] + rx * dilation[1], ci
            ].astype("int32")
            * kernel[c, ry, rx, ci].astype("int32"),
            axis=[ry, rx],
        ),
        name="depthwise_conv2d_NCHWc",
    )


POOL_BLOCK_NAME = "max_pool_blocked"  # looked up by the default schedule
SUM_BLOCK_NAME = "spatial_sum_blocked"


def _dtype_min(dtype: str):
    import numpy as np

    return tirx.const(int(np.iinfo(dtype).min), dtype)


def max_pool_blocked(data, pool_size, strides, padding, dilation, out_hw) -> te.Tensor:
    """Max pooling of blocked data, in the blocked layout: ``[B, C/16, OH, OW, 16]``.

    ``out_hw`` is the output size the graph gives (ceil mode included); the input is padded
    with the dtype's minimum, at the bottom and right as far as the last window reaches, so a
    padded tap never wins over a real one. (Blocked uint8 lanes hold the same non-negative
    values as the int8 ones they stand for, so their minimum, 0, is as good as -128.)
    """
    b, cb, h, w, lanes = data.shape
    kh, kw = (int(v) for v in pool_size)
    top, left, bottom, right = (int(v) for v in padding)
    oh, ow = (int(v) for v in out_hw)
    reach_h = (oh - 1) * strides[0] + (kh - 1) * dilation[0] + 1
    reach_w = (ow - 1) * strides[1] + (kw - 1) * dilation[1] + 1
    bottom = max(bottom, reach_h - int(h) - top)
    right = max(right, reach_w - int(w) - left)
    pad = data
    if any((top, left, bottom, right)):
        pad = topi.nn.pad(
            data,
            [0, 0, top, left, 0],
            [0, 0, bottom, right, 0],
            pad_value=_dtype_min(str(data.dtype)),
            name="pool_pad",
        )
    ry = te.reduce_axis((0, kh), name="ry")
    rx = te.reduce_axis((0, kw), name="rx")
    return te.compute(
        (b, cb, oh, ow, lanes),
        lambda n, c, y, x, lane: te.max(
            pad[n, c, y * strides[0] + ry * dilation[0], x * strides[1] + rx * dilation[1], lane],
            axis=[ry, rx],
        ),
        name=POOL_BLOCK_NAME,
    )


def spatial_sum_blocked(data, dtype: str) -> te.Tensor:
    """The sum over height and width of blocked data, as ``dtype``: ``[B, C/16, 1, 1, 16]``
    (``relax.sum(axis=[2, 3], keepdims=True)`` in the blocked layout; padded lanes stay 0)."""
    b, cb, h, w, lanes = data.shape
    ry = te.reduce_axis((0, h), name="ry")
    rx = te.reduce_axis((0, w), name="rx")
    return te.compute(
        (b, cb, 1, 1, lanes),
        lambda n, c, y, x, lane: te.sum(data[n, c, ry, rx, lane].astype(dtype), axis=[ry, rx]),
        name=SUM_BLOCK_NAME,
    )
