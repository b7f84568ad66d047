"""QDQ models: quantize/dequantize pairs give activation scales, dequantized constants give weights.

An activation's ``dequantize(quantize(x, s, zp))`` fixes its int8 scale: with int8 and zero point
0 the model's own scale ``s`` is used as is; otherwise (uint8, or a non-zero zero point) the
symmetric int8 scale that covers the same real range, clipped to that range. A quantize of the
input image is an identity here, because the integer pixels are already exact.
"""

from __future__ import annotations

import numpy as np
from tvm import relax

from tvm_intsmooth.quantize.rewriter import RewriteContext, handles
from tvm_intsmooth.quantize.states import Acc, Affine, Const, Int8, State


def _qparams(call: relax.Call, rank: int):
    scale = call.args[1].value.numpy().astype(np.float64)
    zero_point = call.args[2].value.numpy()
    axis = int(call.attrs.axis)
    if scale.size > 1:
        shape = [1] * rank
        shape[axis % rank] = -1
        scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
    return scale, zero_point


@handles("relax.dequantize")
def dequantize(ctx: RewriteContext, call: relax.Call, args: list[State], name: str) -> State:
    state = args[0]
    if not isinstance(state, Const):
        return state
    q = state.value
    scale, zero_point = _qparams(call, q.ndim)
    value = (q.astype(np.float64) - zero_point) * scale
    if q.dtype == np.int8 and np.all(zero_point == 0):
        return Const(value, q.astype(np.int8), np.broadcast_to(scale, q.shape))
    return Const(value)


@handles("relax.quantize")
def quantize(ctx: RewriteContext, call: relax.Call, args: list[State], name: str) -> State:
    state = args[0]
    if isinstance(state, Affine):
        return state
    if isinstance(state, Const):
        raise ctx.fail(call, "quantizes a constant at run time; fold it into the weights.")
    scale, zero_point = _qparams(call, ctx.rank(state.expr))
    if scale.size != 1:
        raise ctx.fail(call, "quantizes an activation per channel; only per-tensor is supported.")
    info = np.iinfo(str(call.attrs.out_dtype))
    s, zp = float(scale.reshape(())), int(zero_point.reshape(()))
    lo, hi = s * (info.min - zp), s * (info.max - zp)
    int8_scale = s if (info.min == -128 and zp == 0) else max(abs(lo), abs(hi)) / 127
    if isinstance(state, Int8):
        if int8_scale == state.scale and lo <= -128 * s and hi >= 127 * s:
            return state  # already on this grid, and the range clips nothing
        state = ctx.to_acc(state, call, name)
    clipped = Acc(
        state.expr,
        state.scale,
        name,
        lo if state.lo is None else max(lo, state.lo),
        hi if state.hi is None else min(hi, state.hi),
    )
    return ctx.acc_to_int8(clipped, int8_scale)
