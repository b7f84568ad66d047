"""Shape ops: reshape (squeeze, expand_dims, flatten) of activations, of the input's affine form
and of constants; permute of constants; concat of activations on one int8 scale."""

from __future__ import annotations

import numpy as np
import tvm_ffi
from tvm import relax
from tvm.relax import op as R

from tvm_intsmooth.quantize.rewriter import (
    INT8_MAX,
    INT8_MIN,
    RewriteContext,
    handles,
    sample_shape,
)
from tvm_intsmooth.quantize.states import Acc, Affine, Const, Int8, State, Unary


@handles("relax.reshape", "relax.squeeze", "relax.expand_dims", "relax.flatten")
def reshape(ctx: RewriteContext, call: relax.Call, args: list[State], name: str) -> State:
    """Any reshape that keeps the batch axis (squeeze/expand_dims/flatten are reshapes to the
    binding's static shape)."""
    state = args[0]
    new_shape = call.args[1] if call.op.name == "relax.reshape" else call.ty.shape
    if call.op.name != "relax.reshape" and isinstance(state, Affine | Int8 | Acc | Unary):
        out_batch, in_batch = call.ty.shape[0], call.args[0].ty.shape[0]
        if not tvm_ffi.structural_equal(out_batch, in_batch):
            raise ctx.fail(call, "moves the batch axis; only reshapes that keep it.")
    if isinstance(state, Const):
        return Const(state.value.reshape([int(d) for d in call.ty.shape]))
    if isinstance(state, Affine):
        old = sample_shape(state.expr)
        new = sample_shape(call)
        a = np.broadcast_to(state.a, old).reshape(new)
        c = np.broadcast_to(state.c, old).reshape(new)
        return Affine(ctx.emit(R.reshape(state.expr, new_shape), name), a, c)
    x = ctx.materialize(state, call)
    return Int8(ctx.emit(R.reshape(x.expr, new_shape), name), x.scale)


@handles("relax.permute_dims")
def permute_dims(ctx: RewriteContext, call: relax.Call, args: list[State], name: str) -> State:
    state = args[0]
    if not isinstance(state, Const):
        raise ctx.fail(call, "transposes an activation; only constant weights may be transposed.")
    axes = None if call.attrs.axes is None else [int(v) for v in call.attrs.axes]
    value = np.transpose(state.value, axes)
    if state.q is None:
        return Const(value)
    return Const(value, np.transpose(state.q, axes), np.transpose(state.qscale, axes))


@handles("relax.concat")
def concat(ctx: RewriteContext, call: relax.Call, args: list[State], name: str) -> State:
    """Every input requantized to the output's int8 scale (its calibrated range / 127) by an
    integer multiplier and clamped, then concatenated as int8: an accumulator is requantized
    once, straight to that scale; an int8 value already on it is used as it is."""
    (states,) = args
    if any(isinstance(s, Affine | Const) for s in states):
        raise ctx.fail(call, "concatenates the input image or a constant; only activations.")
    scale = ctx.output_scale(name)
    parts = []
    for state in states:
        if isinstance(state, Acc) and state.cached is None:
            parts.append(ctx.acc_to_int8(state, scale).expr)
            continue
        q = ctx.materialize(state, call)
        if q.scale == scale:
            parts.append(q.expr)
        else:
            parts.append(ctx.requantize(q.expr, q.scale / scale, "int8", INT8_MIN, INT8_MAX))
    axis = int(call.attrs.axis) % ctx.rank(call)
    if axis == 0:
        raise ctx.fail(call, "concatenates along the batch axis.")
    return Int8(ctx.emit(R.concat(parts, axis=axis), name), scale)
