"""The integer rewriter: walks a float Relax function and emits its integer-only twin.

Each binding of the float function is handed to the handler registered for its operator (see
``ops/``), which receives the states of the operands (``states.py``) and returns the state of the
result, emitting integer operators into the new function as it goes. Requantization to int8 is
lazy: an accumulator is materialized only when a consumer needs int8 operands, so a following
ReLU/Clip is folded into the requantization's clamp and its calibrated range is the one used.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tvm
from tvm import relax
from tvm.relax import op as R

from tvm_intsmooth.errors import UnsupportedModelError
from tvm_intsmooth.quantize.fixed_point import quantize_multiplier
from tvm_intsmooth.quantize.states import Acc, Int8, State

INT8_MIN, INT8_MAX = -128, 127

Handler = Callable[["RewriteContext", relax.Call, list[State], str], State]
HANDLERS: dict[str, Handler] = {}


def handles(*op_names: str):
    """Register a handler for the given Relax operators (e.g. ``"relax.nn.conv2d"``)."""

    def register(fn: Handler) -> Handler:
        for name in op_names:
            HANDLERS[name] = fn
        return fn

    return register


def iconst(value, dtype: str) -> tvm.ir.GenericConst:
    """An integer constant of an explicit dtype (relax.const would turn int64 into int32)."""
    return relax.const(np.asarray(value).astype(dtype), dtype)


def channel_shape(values: np.ndarray, rank: int) -> tuple[int, ...]:
    """Broadcast shape of a per-channel (axis 1) constant for a tensor of the given rank."""
    if values.ndim == 0:
        return ()
    return (1, values.shape[0]) + (1,) * (rank - 2)


class RewriteContext:
    """Emission helpers and calibration lookup shared by the operator handlers."""

    def __init__(self, bb: relax.BlockBuilder, calibration: dict[str, float], where: str = "main"):
        self.bb = bb
        self.calibration = calibration
        self.where = where
        self.forced_scale: dict[str, float] = {}

    def fail(self, call: relax.Call, why: str) -> UnsupportedModelError:
        return UnsupportedModelError(f"QuantizeToInteger: {call.op.name} in {self.where} {why}")

    def rank(self, expr: relax.Expr) -> int:
        return len(expr.ty.shape)

    def amax(self, key: str) -> float:
        if key not in self.calibration:
            raise UnsupportedModelError(
                f"QuantizeToInteger: no calibration range for {key!r}; calibrate the module that "
                "is being quantized (tvm_intsmooth.pipeline.calibrate)."
            )
        return max(float(self.calibration[key]), 1e-8)

    def emit(self, expr: relax.Expr, name: str | None = None) -> relax.Var:
        return self.bb.emit(expr, name_hint=name) if name else self.bb.emit(expr)

    def requantize(
        self,
        x: relax.Expr,
        real: np.ndarray,
        out_dtype: str,
        lo: int | None = None,
        hi: int | None = None,
        name: str | None = None,
    ) -> relax.Expr:
        """Emit ``clip(round(x * real), lo, hi)`` in integers; ``real`` is scalar or per channel."""
        real = np.asarray(real, np.float64)
        rank = self.rank(x)
        if not np.all(real == 1.0):
            mult, shift = quantize_multiplier(real)
            shape = channel_shape(real, rank)
            x = self.emit(R.astype(x, "int64"))
            x = self.emit(R.multiply(x, iconst(mult.reshape(shape), "int64")))
            x = self.emit(R.add(x, iconst((np.int64(1) << (shift - 1)).reshape(shape), "int64")))
            x = self.emit(R.right_shift(x, iconst(shift.reshape(shape), "int64")))
        if lo is not None or hi is not None:
            x = self.emit(R.clip(x, lo, hi))
        if x.ty.dtype != out_dtype:
            x = R.astype(x, out_dtype)
        return self.emit(x, name)

    def materialize(self, state: State, call: relax.Call) -> Int8:
        """The int8 form of an activation, requantizing an accumulator if needed."""
        if isinstance(state, Int8):
            return state
        if isinstance(state, Acc):
            if state.cached is None:
                scale = self.forced_scale.get(state.range_key) or self.amax(state.range_key) / 127
                state.cached = self.acc_to_int8(state, scale)
            return state.cached
        raise self.fail(call, f"needs an activation but got a {type(state).__name__} operand")

    def acc_to_int8(self, state: Acc, scale: float) -> Int8:
        lo = INT8_MIN if state.lo is None else max(INT8_MIN, int(np.round(state.lo / scale)))
        hi = INT8_MAX if state.hi is None else min(INT8_MAX, int(np.round(state.hi / scale)))
        expr = self.requantize(
            state.expr, state.scale / scale, "int8", lo, hi, name=f"{state.range_key}_q"
        )
        return Int8(expr, scale)

    def to_acc(self, state: State, call: relax.Call, key: str) -> Acc:
        """An unclipped int32 accumulator for arithmetic (applying pending clips via int8)."""
        if isinstance(state, Acc) and state.lo is None and state.hi is None:
            return state
        q = self.materialize(state, call)
        return Acc(self.emit(R.astype(q.expr, "int32")), np.asarray(q.scale), key)


def sample_shape(expr: relax.Expr) -> tuple[int, ...]:
    """The static shape of a tensor without its (symbolic) batch axis."""
    shape = expr.ty.shape
    return tuple(int(shape[i]) for i in range(1, len(shape)))
