"""Worst-case ranges of every integer intermediate, checked at compile time (no silent overflow).

Signed integer overflow is undefined behaviour for LLVM, so an accumulator that can leave int32
may give any result, differently on each target. :func:`check_accumulator_bounds` walks an
integer Relax function binding by binding (the operators the quantizer and the smoothing passes
emit) with interval arithmetic and raises an :class:`IntSmoothError` naming the first binding
whose worst case leaves its dtype.

For a convolution or a matmul with constant weights the bound is exact per output channel:
with inputs in [lo, hi] (widened to contain 0, the padding value), sum_i w_i x_i lies in
[P lo + N hi, P hi + N lo] with P and N the sums of the positive and negative weights. Every
partial sum, in any order and any blocking, lies in that interval too, since each term's
interval contains 0. Kernels that accumulate in a narrower type or in another order (blocked
int8 kernels, ``vpmaddubsw`` pair sums into int16) can use :func:`accumulator_bound` for their
own partial sums: it is the order-free bound fan_in x max|input| x max|weight|.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax

from tvm_intsmooth.errors import UnsupportedModelError

INT8_WEIGHT_MAX = 128  # |w| <= 128 for any int8 weight (the quantizer's are within 127)


@dataclass(frozen=True)
class Interval:
    """Closed integer interval [lo, hi] (Python ints: no overflow while bounding)."""

    lo: int
    hi: int

    @property
    def max_abs(self) -> int:
        return max(abs(self.lo), abs(self.hi))

    def with_zero(self) -> Interval:
        return Interval(min(self.lo, 0), max(self.hi, 0))


def dtype_interval(dtype: str) -> Interval:
    """The values of an integer dtype (bool as 0..1)."""
    dtype = str(dtype)
    if dtype == "bool":
        return Interval(0, 1)
    info = np.iinfo(dtype)
    return Interval(int(info.min), int(info.max))


def accumulator_bound(
    fan_in: int, input_max_abs: int, weight_max_abs: int = INT8_WEIGHT_MAX
) -> int:
    """Order-free worst case |sum of fan_in products| (any partial sum, any blocking).

    For example the first layer of a smoothed classifier takes unclipped noisy int16 pixels
    (|x| <= 255 + K) against int8 weights: ``accumulator_bound(fan_in, 255 + K)`` must stay
    below 2^31. The kernels-layout session's blocked kernels use it for their partial sums.
    """
    return int(fan_in) * int(input_max_abs) * int(weight_max_abs)


def fits(bound: int | Interval, dtype: str) -> bool:
    """Whether a worst-case magnitude (or interval) fits ``dtype``."""
    full = dtype_interval(dtype)
    if isinstance(bound, Interval):
        return full.lo <= bound.lo and bound.hi <= full.hi
    return bound <= full.hi


def _const_interval(expr: relax.Expr) -> Interval | None:
    if isinstance(expr, tvm.ir.GenericConst):
        value = expr.value.numpy()
        if value.dtype.kind not in "iub" or value.size == 0:
            return None
        return Interval(int(value.min()), int(value.max()))
    if isinstance(expr, tvm.tirx.IntImm):
        return Interval(int(expr.value), int(expr.value))
    return None


def _weighted_sum(x: Interval, weight: np.ndarray, out_axis: int) -> Interval:
    """Interval of sum_i w_i x_i per output channel (rows of ``weight`` along out_axis)."""
    w = np.moveaxis(weight.astype(object), out_axis, 0).reshape(weight.shape[out_axis], -1)
    x = x.with_zero()  # zero padding, and every partial sum
    pos = [int(sum(v for v in row if v > 0)) for row in w]
    neg = [int(sum(v for v in row if v < 0)) for row in w]
    return Interval(
        min(p * x.lo + n * x.hi for p, n in zip(pos, neg, strict=True)),
        max(p * x.hi + n * x.lo for p, n in zip(pos, neg, strict=True)),
    )


def _products(a: Interval, b: Interval) -> Interval:
    corners = [a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi]
    return Interval(min(corners), max(corners))


def _shift(a: Interval, shifts: np.ndarray) -> Interval:
    values = [int(s) for s in np.unique(shifts)]
    return Interval(min(a.lo >> s for s in values), max(a.hi >> s for s in values))


def _static_dims(expr: relax.Expr, axes) -> list[int] | None:
    """The sizes of ``axes`` (all axes when None), or None if one is symbolic."""
    shape = list(expr.ty.shape)
    axes = range(len(shape)) if axes is None else [int(a) % len(shape) for a in axes]
    dims = [shape[a] for a in axes]
    if not all(isinstance(d, tvm.tirx.IntImm) for d in dims):
        return None
    return [int(d) for d in dims]


PASS_THROUGH = {
    "relax.astype",
    "relax.reshape",
    "relax.broadcast_to",
    "relax.repeat",
    "relax.nn.max_pool2d",
    "relax.max",
    "relax.min",
    "relax.take",
}
BOOLEAN = {
    "relax.equal",
    "relax.less",
    "relax.less_equal",
    "relax.greater",
    "relax.greater_equal",
    "relax.logical_and",
}
BINARY = {
    "relax.add",
    "relax.subtract",
    "relax.multiply",
    "relax.right_shift",
    "relax.maximum",
    "relax.minimum",
    "relax.where",
}


class _Bounds:
    def __init__(self, where: str):
        self.where = where
        self.values: dict[relax.Var, Interval] = {}

    def of(self, expr: relax.Expr) -> Interval:
        if isinstance(expr, relax.Var):
            if expr in self.values:
                return self.values[expr]
            return dtype_interval(expr.ty.dtype)
        const = _const_interval(expr)
        if const is not None:
            return const
        return dtype_interval(expr.ty.dtype)

    def conv_or_matmul(self, var: relax.Var, call: relax.Call) -> Interval:
        data, weight = call.args[0], call.args[1]
        x = self.of(data)
        if isinstance(weight, tvm.ir.GenericConst):
            w = weight.value.numpy()
            out_axis = 0 if call.op.name == "relax.nn.conv2d" else w.ndim - 1
            result = _weighted_sum(x, w, out_axis)
        else:
            wi = self.of(weight)
            fan_in = int(np.prod([int(d) for d in data.ty.shape[1:]]))
            if call.op.name == "relax.matmul":
                fan_in = int(data.ty.shape[-1])
            bound = accumulator_bound(fan_in, x.with_zero().max_abs, wi.max_abs)
            result = Interval(-bound, bound)
        return result

    def interval(self, var: relax.Var, call: relax.Call, externs: Mapping[str, Interval]):
        op = call.op.name
        args = call.args
        if op == "relax.call_tir":
            name = args[0].name_hint
            return externs.get(name, dtype_interval(var.ty.dtype))
        if op in ("relax.nn.conv2d", "relax.matmul"):
            return self.conv_or_matmul(var, call)
        if op in PASS_THROUGH:  # values of the first operand (a lookup table's, for take)
            return self.of(args[0])
        if op in BOOLEAN:
            return Interval(0, 1)
        if op == "relax.concat":
            parts = [self.of(f) for f in args[0].fields]
            return Interval(min(p.lo for p in parts), max(p.hi for p in parts))
        if op in ("relax.sum", "relax.argmax"):
            return self.reduction(var, call)
        if op in ("relax.clip", "relax.nn.relu", "relax.negative"):
            return self.unary(call)
        if op in BINARY:
            return self.binary(call)
        # Anything else: the declared dtype's full range (sound, and flagged only if it feeds
        # an accumulation that then cannot be bounded).
        return dtype_interval(var.ty.dtype)

    def reduction(self, var: relax.Var, call: relax.Call) -> Interval:
        data = call.args[0]
        if call.op.name == "relax.sum":
            dims = _static_dims(data, call.attrs.axis)
            if dims is None:
                return dtype_interval(var.ty.dtype)
            count, a = int(np.prod(dims)), self.of(data).with_zero()
            return Interval(a.lo * count, a.hi * count)
        axis = call.attrs.axis
        dims = _static_dims(data, None if axis is None else [axis])
        if dims is None:
            return dtype_interval(var.ty.dtype)
        return Interval(0, int(np.prod(dims)) - 1)

    def unary(self, call: relax.Call) -> Interval:
        x = self.of(call.args[0])
        if call.op.name == "relax.clip":
            lo, hi = self.of(call.args[1]), self.of(call.args[2])
            return Interval(min(max(x.lo, lo.lo), hi.hi), max(min(x.hi, hi.hi), lo.lo))
        if call.op.name == "relax.nn.relu":
            return Interval(max(x.lo, 0), max(x.hi, 0))
        return Interval(-x.hi, -x.lo)

    def binary(self, call: relax.Call) -> Interval:
        op, args = call.op.name, call.args
        a, b = self.of(args[0]), self.of(args[1])
        if op == "relax.right_shift":
            if isinstance(args[1], tvm.ir.GenericConst):
                return _shift(a, args[1].value.numpy())
            return Interval(min(a.lo, 0), max(a.hi, 0))
        if op == "relax.where":
            b, c = self.of(args[1]), self.of(args[2])
            return Interval(min(b.lo, c.lo), max(b.hi, c.hi))
        return {
            "relax.add": lambda: Interval(a.lo + b.lo, a.hi + b.hi),
            "relax.subtract": lambda: Interval(a.lo - b.hi, a.hi - b.lo),
            "relax.multiply": lambda: _products(a, b),
            "relax.maximum": lambda: Interval(max(a.lo, b.lo), max(a.hi, b.hi)),
            "relax.minimum": lambda: Interval(min(a.lo, b.lo), min(a.hi, b.hi)),
        }[op]()


def check_accumulator_bounds(
    func: relax.Function,
    inputs: Mapping[str, Interval] | None = None,
    externs: Mapping[str, Interval] | None = None,
    what: str = "the integer classifier",
    advice: str = "",
) -> dict[str, Interval]:
    """Bound every integer binding of ``func`` and refuse any that can leave its dtype.

    Args:
        func: an integer Relax function (one or more blocks of bindings).
        inputs: interval of each parameter by name (default: its dtype's range).
        externs: interval of the output of each ``call_tir`` by PrimFunc name (e.g. the noise).
        what: how to name the model in the error.
        advice: what the user can do, appended to the error.

    Returns:
        The interval of every binding, by variable name.

    Raises:
        UnsupportedModelError: a binding's worst case does not fit its dtype (an int32
            accumulator that can overflow, or a narrowing cast that can wrap).
    """
    bounds = _Bounds(what)
    for param in func.params:
        if isinstance(param.ty, relax.TensorType) and "int" in str(param.ty.dtype):
            given = (inputs or {}).get(param.name)
            bounds.values[param] = given or dtype_interval(param.ty.dtype)
    out: dict[str, Interval] = {}
    for block in func.body.blocks:
        for binding in block.bindings:
            var, value = binding.var, binding.value
            ty = var.ty
            if not isinstance(ty, relax.TensorType) or str(ty.dtype) in ("", "void"):
                continue
            if "float" in str(ty.dtype):
                continue  # not an integer graph here; check_integer_only reports floats
            if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op):
                interval = bounds.interval(var, value, externs or {})
            else:
                interval = bounds.of(value)
            if not fits(interval, str(ty.dtype)):
                _raise_overflow(var, value, interval, str(ty.dtype), bounds, what, advice)
            bounds.values[var] = interval
            out[var.name] = interval
    return out


def _raise_overflow(var, value, interval, dtype, bounds, what, advice) -> None:
    op = value.op.name.removeprefix("relax.") if isinstance(value, relax.Call) else "binding"
    detail = ""
    if op in ("nn.conv2d", "matmul"):
        x = bounds.of(value.args[0])
        detail = f" (inputs in [{x.lo}, {x.hi}] times the layer's int8 weights)"
    full = dtype_interval(dtype)
    raise UnsupportedModelError(
        f"{what}: {op} {var.name!r} can reach [{interval.lo}, {interval.hi}]{detail}, beyond "
        f"{dtype} [{full.lo}, {full.hi}], so it could overflow (undefined behaviour, wrong "
        f"votes). {advice or 'Use a layer with a smaller fan-in or a smaller input range.'}"
    )
