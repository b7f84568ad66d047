"""Pooling and reductions: max on int8; average as an int32 window sum with the divisor folded
into the scale (or, where it varies per position, a fixed-point multiply per position)."""

from __future__ import annotations

import numpy as np
from tvm import relax
from tvm.relax import op as R

from tvm_intsmooth.quantize.fixed_point import quantize_multiplier
from tvm_intsmooth.quantize.rewriter import RewriteContext, handles, iconst
from tvm_intsmooth.quantize.states import Acc, Int8, State

# A window average whose divisor varies per position is kept at this many bits finer scale.
AVERAGE_EXTRA_BITS = 16


def _pool_attrs(call: relax.Call) -> dict:
    a = call.attrs
    return {
        "pool_size": tuple(int(v) for v in a.pool_size),
        "strides": tuple(int(v) for v in a.strides),
        "padding": tuple(int(v) for v in a.padding),
        "dilation": tuple(int(v) for v in a.dilation),
        "ceil_mode": bool(a.ceil_mode),
    }


@handles("relax.nn.max_pool2d")
def max_pool2d(ctx: RewriteContext, call: relax.Call, args: list[State], name: str) -> State:
    x = ctx.materialize(args[0], call)
    return Int8(ctx.emit(R.nn.max_pool2d(x.expr, **_pool_attrs(call)), name), x.scale)


def window_divisors(
    in_hw, out_hw, pool_size, strides, padding, dilation, count_include_pad
) -> np.ndarray:
    """The divisor of every output position of an average pool (out_h x out_w), as PyTorch,
    ONNX and TVM define it: the window's taps inside the input, or (``count_include_pad``)
    inside the padded input; taps past the padding (ceil mode) never count."""
    top, left, bottom, right = padding
    counts = []
    for size, out, k, s, d, lo, hi in zip(
        in_hw, out_hw, pool_size, strides, dilation, (top, left), (bottom, right), strict=True
    ):
        start = np.arange(out)[:, None] * s - lo + np.arange(k)[None, :] * d
        first, last = (-lo, size + hi) if count_include_pad else (0, size)
        counts.append(((start >= first) & (start < last)).sum(axis=1))
    return counts[0][:, None] * counts[1][None, :]


@handles("relax.nn.avg_pool2d")
def avg_pool2d(ctx: RewriteContext, call: relax.Call, args: list[State], name: str) -> State:
    """A depthwise conv with ones (the int32 window sum, zero padding, padded further at the
    bottom/right for ceil mode); the divisor goes into the scale where it is the same at every
    position, else each position is multiplied by 2^16 / divisor in fixed point."""
    attrs = _pool_attrs(call)
    x = ctx.materialize(args[0], call)
    channels = int(x.expr.ty.shape[1])
    kh, kw = attrs["pool_size"]
    in_hw = [int(d) for d in list(x.expr.ty.shape)[2:]]
    out_hw = [int(d) for d in list(call.ty.shape)[2:]]
    top, left, bottom, right = attrs["padding"]
    reach = [
        (o - 1) * s + d * (k - 1) + 1
        for o, s, d, k in zip(out_hw, attrs["strides"], attrs["dilation"], (kh, kw), strict=True)
    ]
    extra_h = max(0, reach[0] - (in_hw[0] + top + bottom))
    extra_w = max(0, reach[1] - (in_hw[1] + left + right))
    divisors = window_divisors(
        in_hw,
        out_hw,
        (kh, kw),
        attrs["strides"],
        attrs["padding"],
        attrs["dilation"],
        bool(call.attrs.count_include_pad),
    )
    if np.any(divisors == 0):
        raise ctx.fail(call, "has windows that see no input; check its padding.")
    ones = relax.const(np.ones((channels, 1, kh, kw), np.int8), "int8")
    window_sum = R.nn.conv2d(
        x.expr,
        ones,
        strides=attrs["strides"],
        padding=(top, left, bottom + extra_h, right + extra_w),
        dilation=attrs["dilation"],
        groups=channels,
        out_dtype="int32",
    )
    if np.all(divisors == kh * kw):
        return Acc(ctx.emit(window_sum, name), np.asarray(x.scale / (kh * kw)), name)
    total = ctx.emit(window_sum)
    real = (2.0**AVERAGE_EXTRA_BITS / divisors).reshape(1, 1, *out_hw)
    mult, shift = quantize_multiplier(real)
    wide = ctx.emit(R.astype(total, "int64"))
    wide = ctx.emit(R.multiply(wide, iconst(mult, "int64")))
    wide = ctx.emit(R.add(wide, iconst(np.int64(1) << (shift - 1), "int64")))
    wide = ctx.emit(R.right_shift(wide, iconst(shift, "int64")))
    out = ctx.emit(R.astype(wide, "int32"), name)
    return Acc(out, np.asarray(x.scale / 2.0**AVERAGE_EXTRA_BITS), name)


def _reduced_axes(call: relax.Call) -> list[int]:
    rank = len(call.args[0].ty.shape)
    if call.attrs.axis is None:
        return list(range(rank))
    return sorted({int(v) % rank for v in call.attrs.axis})


@handles("relax.mean")
def mean(ctx: RewriteContext, call: relax.Call, args: list[State], name: str) -> State:
    """An int32 sum over the axes (any of them, any spelling); 1/count goes into the scale."""
    axes = _reduced_axes(call)
    if 0 in axes:
        raise ctx.fail(call, "averages over the batch axis.")
    x = ctx.materialize(args[0], call)
    count = int(np.prod([int(x.expr.ty.shape[a]) for a in axes]))
    wide = ctx.emit(R.astype(x.expr, "int32"))
    total = ctx.emit(R.sum(wide, axis=axes, keepdims=bool(call.attrs.keepdims)), name)
    return Acc(total, np.asarray(x.scale / count), name)


@handles("relax.max")
def reduce_max(ctx: RewriteContext, call: relax.Call, args: list[State], name: str) -> State:
    """The int8 maximum (global max pooling, ReduceMax): the scale is the input's."""
    axes = _reduced_axes(call)
    if 0 in axes:
        raise ctx.fail(call, "takes a maximum over the batch axis.")
    x = ctx.materialize(args[0], call)
    out = R.max(x.expr, axis=axes, keepdims=bool(call.attrs.keepdims))
    return Int8(ctx.emit(out, name), x.scale)
