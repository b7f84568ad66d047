"""Pooling: max on int8; average as an int32 window sum with the divisor folded into the scale."""

from __future__ import annotations

import numpy as np
from tvm import relax
from tvm.relax import op as R

from tvm_intsmooth.quantize.rewriter import RewriteContext, handles
from tvm_intsmooth.quantize.states import Acc, Int8, State


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


@handles("relax.nn.avg_pool2d")
def avg_pool2d(ctx: RewriteContext, call: relax.Call, args: list[State], name: str) -> State:
    attrs = _pool_attrs(call)
    if attrs["ceil_mode"] or (any(attrs["padding"]) and not call.attrs.count_include_pad):
        raise ctx.fail(
            call,
            "uses ceil_mode or excludes padding from the average; the divisor "
            "would vary per position. Use count_include_pad=1 or no padding.",
        )
    x = ctx.materialize(args[0], call)
    channels = int(x.expr.ty.shape[1])
    kh, kw = attrs["pool_size"]
    ones = relax.const(np.ones((channels, 1, kh, kw), np.int8), "int8")
    window_sum = R.nn.conv2d(
        x.expr,
        ones,
        strides=attrs["strides"],
        padding=attrs["padding"],
        dilation=attrs["dilation"],
        groups=channels,
        out_dtype="int32",
    )
    return Acc(ctx.emit(window_sum, name), np.asarray(x.scale / (kh * kw)), name)


@handles("relax.mean")
def mean(ctx: RewriteContext, call: relax.Call, args: list[State], name: str) -> State:
    axes = sorted(int(v) for v in call.attrs.axis)
    if axes != [2, 3] or ctx.rank(args[0].expr) != 4:
        raise ctx.fail(call, f"averages over axes {axes}; only global pooling (2, 3) is supported.")
    x = ctx.materialize(args[0], call)
    count = int(x.expr.ty.shape[2]) * int(x.expr.ty.shape[3])
    wide = ctx.emit(R.astype(x.expr, "int32"))
    total = ctx.emit(R.sum(wide, axis=[2, 3], keepdims=bool(call.attrs.keepdims)), name)
    return Acc(total, np.asarray(x.scale / count), name)
