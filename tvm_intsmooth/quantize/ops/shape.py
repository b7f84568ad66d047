"""Shape ops: reshape of activations, of the input's affine form and of constants; permute."""

from __future__ import annotations

import numpy as np
from tvm import relax
from tvm.relax import op as R

from tvm_intsmooth.quantize.rewriter import RewriteContext, handles, sample_shape
from tvm_intsmooth.quantize.states import Affine, Const, Int8, State


@handles("relax.reshape")
def reshape(ctx: RewriteContext, call: relax.Call, args: list[State], name: str) -> State:
    state, new_shape = args[0], call.args[1]
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
