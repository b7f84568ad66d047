"""Elementwise ops: add/subtract/multiply/divide, relu, clip.

Two activations: ``add``/``subtract`` rescale both to one int32 scale; ``multiply`` is the int8 x
int8 -> int32 product (squeeze-excitation gates, HardSwish's x * hardsigmoid(x)). Elementwise
functions of one int8 value (``Unary``: sigmoid, tanh, ...) compose with scalar arithmetic, clips
and each other into one lookup table, and ``x * f(x)`` (SiLU) into the table of ``t * f(t)``.
"""

from __future__ import annotations

import math

import numpy as np
from tvm import relax
from tvm.relax import op as R

from tvm_intsmooth.quantize.rewriter import RewriteContext, channel_shape, handles, sample_shape
from tvm_intsmooth.quantize.states import Acc, Affine, Const, Int8, State, Unary

# Residual sums are formed at this many bits finer than the coarser operand's scale.
RESIDUAL_EXTRA_BITS = 16


def _sample_const(ctx: RewriteContext, call: relax.Call, const: np.ndarray, rank: int):
    """A constant operand without its batch axis (broadcastable to the sample shape)."""
    const = np.asarray(const, np.float64)
    if const.ndim == rank:
        if const.shape[0] != 1:
            raise ctx.fail(call, f"has a constant of shape {const.shape} along the batch axis.")
        return const[0]
    return const


def _per_channel(ctx, call, const: np.ndarray, expr: relax.Expr) -> np.ndarray:
    """A constant as one value per channel (axis 1), or a scalar."""
    shape = sample_shape(expr)
    const = _sample_const(ctx, call, const, len(shape) + 1)
    if const.size == 1:
        return const.reshape(())
    full = np.broadcast_to(const, shape).reshape(shape[0], -1)
    if not np.all(full == full[:, :1]):
        raise ctx.fail(
            call,
            "uses a constant that varies within a channel; only per-channel "
            "constants can be folded into integer arithmetic.",
        )
    return full[:, 0].copy()


def _add_const(ctx, call, state: State, const: np.ndarray, name: str) -> State:
    if isinstance(state, Affine):
        rank = len(state.expr.ty.shape)
        return Affine(state.expr, state.a, state.c + _sample_const(ctx, call, const, rank))
    acc = ctx.to_acc(state, call, name)
    bias = _per_channel(ctx, call, const, acc.expr)
    q = np.round(bias / acc.scale)
    q = q.reshape(channel_shape(q, ctx.rank(acc.expr)))
    expr = ctx.emit(R.add(acc.expr, relax.const(q.astype(np.int32), "int32")), name)
    return Acc(expr, acc.scale, name)


def _scale_by_const(ctx, call, state: State, const: np.ndarray, name: str) -> State:
    if isinstance(state, Affine):
        rank = len(state.expr.ty.shape)
        k = _sample_const(ctx, call, const, rank)
        return Affine(state.expr, state.a * k, state.c * k)
    acc = ctx.to_acc(state, call, name)
    k = _per_channel(ctx, call, const, acc.expr)
    if np.any(k <= 0):
        raise ctx.fail(call, "multiplies an activation by a non-positive constant.")
    scale = acc.scale * k
    return Acc(acc.expr, scale, name)


def _add_tensors(ctx, call, a: State, b: State, name: str, op=R.add) -> State:
    qa, qb = ctx.materialize(a, call), ctx.materialize(b, call)
    scale = max(qa.scale, qb.scale) / 2.0**RESIDUAL_EXTRA_BITS
    terms = [ctx.requantize(q.expr, np.asarray(q.scale / scale), "int32") for q in (qa, qb)]
    return Acc(ctx.emit(op(*terms), name), np.asarray(scale), name)


def _multiply_tensors(ctx, call, a: State, b: State, name: str) -> State:
    """int8 x int8 -> int32 (|product| <= 2^14), at the product of the two scales."""
    qa, qb = ctx.materialize(a, call), ctx.materialize(b, call)
    wide = [ctx.emit(R.astype(q.expr, "int32")) for q in (qa, qb)]
    return Acc(ctx.emit(R.multiply(*wide), name), np.asarray(qa.scale * qb.scale), name)


def _source_of(state: State) -> Int8 | None:
    """The int8 value a state is an elementwise function of (itself for an int8 value)."""
    if isinstance(state, Unary):
        return state.src
    if isinstance(state, Int8):
        return state
    if isinstance(state, Acc):
        return state.cached
    return None


def _function_of(state: State, src: Int8):
    """``state`` as a function of the int8 value ``src``, or None if it is not one."""
    own = _source_of(state)
    if own is None or not (own is src or own.expr.same_as(src.expr)):
        return None
    if isinstance(state, Unary):
        return state.fn
    return lambda t: t


_COMBINE = {"add": np.add, "subtract": np.subtract, "multiply": np.multiply}


def _fuse_unary(op: str, a: State, b: State, name: str) -> State | None:
    """Two elementwise functions of the same int8 value (at least one of them pending):
    one function (x * sigmoid(x) for SiLU, sigmoid(x) + tanh(x), ...), one table."""
    if op not in _COMBINE or not (isinstance(a, Unary) or isinstance(b, Unary)):
        return None
    src = a.src if isinstance(a, Unary) else b.src
    fa, fb = _function_of(a, src), _function_of(b, src)
    if fa is None or fb is None:
        return None
    combine = _COMBINE[op]
    return Unary(src, lambda t: combine(fa(t), fb(t)), name)


def _unary_scalar(op: str, state: Unary, k: float, name: str) -> Unary:
    fn = state.fn
    compose = {
        "add": lambda t: fn(t) + k,
        "subtract": lambda t: fn(t) - k,
        "multiply": lambda t: fn(t) * k,
        "divide": lambda t: fn(t) / k,
    }
    return Unary(state.src, compose[op], name)


def _negate(ctx, call, state: State, name: str) -> State:
    """-x, as an int32 accumulator (or a pending function)."""
    if isinstance(state, Unary):
        return _unary_scalar("multiply", state, -1.0, name)
    if isinstance(state, Affine):
        return Affine(state.expr, -state.a, -state.c)
    acc = ctx.to_acc(state, call, name)
    return Acc(ctx.emit(R.negative(acc.expr), name), acc.scale, name)


@handles("relax.add", "relax.subtract", "relax.multiply", "relax.divide")
def binary(ctx: RewriteContext, call: relax.Call, args: list[State], name: str) -> State:
    op = call.op.name.split(".")[-1]
    a, b = args
    if isinstance(a, Const) and isinstance(b, Const):
        fn = {"add": np.add, "subtract": np.subtract, "multiply": np.multiply, "divide": np.divide}
        return Const(fn[op](a.value, b.value))
    if op in ("add", "multiply") and isinstance(a, Const):
        a, b = b, a
    if op == "subtract" and isinstance(a, Const):  # c - x = (-x) + c
        return _add_const(ctx, call, _negate(ctx, call, b, name), a.value, name)
    fused = _fuse_unary(op, a, b, name)
    if fused is not None:
        return fused
    if op in ("add", "subtract") and not isinstance(b, Const):
        return _add_tensors(ctx, call, a, b, name, R.add if op == "add" else R.subtract)
    if op == "multiply" and not isinstance(b, Const):
        return _multiply_tensors(ctx, call, a, b, name)
    if not isinstance(b, Const):
        raise ctx.fail(call, "divides by an activation; only division by a constant is supported.")
    if isinstance(a, Unary) and np.asarray(b.value).size == 1:
        return _unary_scalar(op, a, float(np.asarray(b.value, np.float64).reshape(())), name)
    if op == "add":
        return _add_const(ctx, call, a, b.value, name)
    if op == "subtract":
        return _add_const(ctx, call, a, -np.asarray(b.value, np.float64), name)
    k = np.asarray(b.value, np.float64)
    return _scale_by_const(ctx, call, a, k if op == "multiply" else 1.0 / k, name)


def _clip(ctx, call, state: State, lo: float | None, hi: float | None, name: str) -> State:
    if isinstance(state, Unary):
        fn, low, high = state.fn, -np.inf if lo is None else lo, np.inf if hi is None else hi
        return Unary(state.src, lambda t: np.clip(fn(t), low, high), name)
    if isinstance(state, Affine | Const):
        raise ctx.fail(call, "clips the input image or a constant; only activations are supported.")
    if isinstance(state, Acc):
        new_lo = lo if state.lo is None else (state.lo if lo is None else max(lo, state.lo))
        new_hi = hi if state.hi is None else (state.hi if hi is None else min(hi, state.hi))
        return Acc(state.expr, state.scale, name, new_lo, new_hi)
    qlo = -128 if lo is None else max(-128, round(lo / state.scale))
    qhi = 127 if hi is None else min(127, round(hi / state.scale))
    return type(state)(ctx.emit(R.clip(state.expr, qlo, qhi), name), state.scale)


@handles("relax.nn.relu")
def relu(ctx: RewriteContext, call: relax.Call, args: list[State], name: str) -> State:
    return _clip(ctx, call, args[0], 0.0, None, name)


@handles("relax.clip")
def clip(ctx: RewriteContext, call: relax.Call, args: list[State], name: str) -> State:
    lo, hi = (float(call.args[i].value) for i in (1, 2))
    return _clip(
        ctx,
        call,
        args[0],
        lo if math.isfinite(lo) else None,
        hi if math.isfinite(hi) else None,
        name,
    )
