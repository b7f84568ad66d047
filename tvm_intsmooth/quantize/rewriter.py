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
from tvm_intsmooth.quantize.states import Acc, Int8, State, Unary

INT8_MIN, INT8_MAX = -128, 127

Handler = Callable[["RewriteContext", relax.Call, list[State], str], State]
HANDLERS: dict[str, Handler] = {}

#: Relax operators that have no integer form, and why: QuantizeToInteger refuses them by name.
REFUSED: dict[str, str] = {
    "relax.nn.softmax": "a softmax inside the network (exponentials of run-time values divided "
    "by their sum) has no integer form; only a final softmax is supported (dropped by the "
    "canonicalize phase: the argmax is unchanged)",
    "relax.nn.log_softmax": "only a final log_softmax is supported (dropped: the argmax is "
    "unchanged)",
    "relax.exp": "an exponential inside the network has no integer form",
    "relax.nn.layer_norm": "layer normalization divides by run-time statistics; use batch "
    "normalization (folded into the layer before it)",
    "relax.nn.group_norm": "group normalization divides by run-time statistics",
    "relax.nn.instance_norm": "instance normalization divides by run-time statistics",
    "relax.nn.rms_norm": "RMS normalization divides by run-time statistics",
    "relax.nn.gelu": "GELU is not supported; use ReLU, HardSwish or SiLU",
    "relax.nn.gelu_tanh": "GELU is not supported; use ReLU, HardSwish or SiLU",
    "relax.erf": "GELU (erf) is not supported; use ReLU, HardSwish or SiLU",
    "relax.nn.attention": "attention (products of run-time values and a softmax) is not supported",
    "relax.nn.attention_bias": "attention is not supported",
    "relax.call_tir": "a TIR function the canonicalize phase did not recognize (a clamp by "
    "constants is recognized) has no integer rewrite",
}


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

    def fail(self, call: relax.Call | None, why: str) -> UnsupportedModelError:
        what = "the output" if call is None else call.op.name
        return UnsupportedModelError(f"QuantizeToInteger: {what} in {self.where} {why}")

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

    def multiply_signed(self, x: relax.Expr, real: np.ndarray, out_dtype: str) -> relax.Expr:
        """Emit ``round(x * real)`` for a scalar or per-channel ``real`` of any sign (zero
        included): a Q31 multiplier of |real| carrying real's sign, in int64."""
        real = np.asarray(real, np.float64)
        magnitude = np.where(real == 0, 1.0, np.abs(real))
        mult, shift = quantize_multiplier(magnitude)
        mult = np.where(real == 0, 0, np.where(real < 0, -mult, mult))
        shape = channel_shape(real, self.rank(x))
        x = self.emit(R.astype(x, "int64"))
        x = self.emit(R.multiply(x, iconst(mult.reshape(shape), "int64")))
        x = self.emit(R.add(x, iconst((np.int64(1) << (shift - 1)).reshape(shape), "int64")))
        x = self.emit(R.right_shift(x, iconst(shift.reshape(shape), "int64")))
        return self.emit(R.astype(x, out_dtype))

    def output_scale(self, key: str) -> float:
        """The int8 scale of the float value ``key``: its calibrated range / 127."""
        return self.forced_scale.get(key) or self.amax(key) / 127

    def materialize(self, state: State, call: relax.Call | None) -> Int8:
        """The int8 form of an activation, requantizing an accumulator (or looking a pending
        elementwise function up in its table) if needed."""
        if isinstance(state, Int8):
            return state
        if isinstance(state, Acc):
            if state.cached is None:
                state.cached = self.acc_to_int8(state, self.output_scale(state.range_key))
            return state.cached
        if isinstance(state, Unary):
            if state.cached is None:
                state.cached = self.lookup_table(state, self.output_scale(state.range_key))
            return state.cached
        raise self.fail(call, f"needs an activation but got a {type(state).__name__} operand")

    def lookup_table(self, state: Unary, scale: float) -> Int8:
        """``fn(src)`` as a 256-entry int8 table indexed by ``src + 128``, built here: entry i
        is ``clip(round(fn((i - 128) * s_src) / scale), -128, 127)``."""
        table = unary_table(state.fn, state.src.scale, scale)
        index = self.emit(R.add(R.astype(state.src.expr, "int32"), iconst(128, "int32")))
        out = self.emit(R.take(relax.const(table, "int8"), index, axis=0), f"{state.range_key}_lut")
        return Int8(out, scale)

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


def unary_table(fn, src_scale: float, out_scale: float) -> np.ndarray:
    """The int8 lookup table of ``fn`` from int8 values at ``src_scale`` to ``out_scale``."""
    q = np.arange(INT8_MIN, INT8_MAX + 1, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        real = np.asarray(fn(q * float(src_scale)), np.float64)
    if not np.all(np.isfinite(real)):
        raise UnsupportedModelError(
            "QuantizeToInteger: an elementwise function is not finite on its int8 input range"
        )
    return np.clip(np.round(real / out_scale), INT8_MIN, INT8_MAX).astype(np.int8)


def sample_shape(expr: relax.Expr) -> tuple[int, ...]:
    """The static shape of a tensor without its (symbolic) batch axis."""
    shape = expr.ty.shape
    return tuple(int(shape[i]) for i in range(1, len(shape)))
