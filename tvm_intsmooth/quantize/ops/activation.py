"""Activations beyond ReLU/Clip: lookup tables and exact piecewise-linear selects.

- ``sigmoid``, ``tanh``, ``nn.silu``: a pending elementwise function of the int8 input
  (``Unary``), composed with what follows (scalar arithmetic, clips, ``x * f(x)``) and emitted as
  one 256-entry int8 table when a consumer needs int8 values; the table is built here, in
  float64, from the int8 input scale and the calibrated output range.
- ``nn.leakyrelu`` / ``nn.prelu``: on the int32 accumulator, ``where(acc > 0, acc,
  round(acc * alpha))`` with a Q31 fixed-point ``alpha`` (per channel for PReLU, any sign), at the
  accumulator's scale: exact up to the one rounding of the negative side.
"""

from __future__ import annotations

import numpy as np
from tvm import relax
from tvm.relax import op as R

from tvm_intsmooth.quantize.rewriter import RewriteContext, handles, iconst
from tvm_intsmooth.quantize.states import Acc, Affine, Const, State, Unary


def _sigmoid(t):
    return 0.5 * (1.0 + np.tanh(0.5 * t))  # overflow-free


FUNCTIONS = {
    "relax.sigmoid": _sigmoid,
    "relax.tanh": np.tanh,
    "relax.nn.silu": lambda t: t * _sigmoid(t),
}


@handles(*FUNCTIONS)
def elementwise_function(
    ctx: RewriteContext, call: relax.Call, args: list[State], name: str
) -> State:
    fn = FUNCTIONS[call.op.name]
    state = args[0]
    if isinstance(state, Affine | Const):
        raise ctx.fail(call, "is applied to the input image or a constant; only activations.")
    if isinstance(state, Unary):
        inner = state.fn
        return Unary(state.src, lambda t: fn(inner(t)), name)
    return Unary(ctx.materialize(state, call), fn, name)


def _leaky(ctx, call, state: State, alpha: np.ndarray, name: str) -> State:
    if isinstance(state, Affine | Const):
        raise ctx.fail(call, "is applied to the input image or a constant; only activations.")
    if isinstance(state, Unary) and alpha.size == 1:
        inner, a = state.fn, float(alpha.reshape(()))
        return Unary(state.src, lambda t: np.where(inner(t) > 0, inner(t), a * inner(t)), name)
    acc = ctx.to_acc(state, call, name)
    negative = ctx.multiply_signed(acc.expr, alpha, "int32")
    positive = ctx.emit(R.greater(acc.expr, iconst(0, "int32")))
    return Acc(ctx.emit(R.where(positive, acc.expr, negative), name), acc.scale, name)


@handles("relax.nn.leakyrelu")
def leakyrelu(ctx: RewriteContext, call: relax.Call, args: list[State], name: str) -> State:
    return _leaky(ctx, call, args[0], np.asarray(float(call.attrs.alpha)), name)


@handles("relax.nn.prelu")
def prelu(ctx: RewriteContext, call: relax.Call, args: list[State], name: str) -> State:
    state, slope = args
    if not isinstance(slope, Const):
        raise ctx.fail(call, "has a slope computed at run time; only constants are supported.")
    rank = ctx.rank(call.args[0])
    axis = int(call.attrs.axis) % rank
    if axis != 1 and rank > 1:
        raise ctx.fail(call, f"has its slope along axis {axis}; only channels (axis 1).")
    alpha = np.asarray(slope.value, np.float64).reshape(-1)
    if alpha.size > 1 and alpha.size != int(call.args[0].ty.shape[1]):
        raise ctx.fail(call, f"has {alpha.size} slopes for {call.args[0].ty.shape[1]} channels.")
    return _leaky(ctx, call, state, alpha if alpha.size > 1 else alpha.reshape(()), name)
