"""QuantizeToInteger: a float Relax classifier -> an integer-only one.

The pass rewrites ``main(x: float32 pixels in [0, 1]) -> float32 logits`` into
``main(x: integer pixels 0..255) -> int32 logits``: int8 symmetric per-output-channel weights,
int8 activations, int32 accumulators and biases, fixed-point requantization, the input
normalization folded into the first layer. Activation ranges come from a calibration table
(``calibrate.collect_ranges``) or from the model's own QDQ nodes.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tvm
from tvm import relax
from tvm.relax import op as R

from tvm_intsmooth.errors import UnsupportedModelError
from tvm_intsmooth.quantize import ops  # noqa: F401  (registers the handlers)
from tvm_intsmooth.quantize.accumulator_bounds import check_accumulator_bounds
from tvm_intsmooth.quantize.graph import dataflow_bindings, replace_function
from tvm_intsmooth.quantize.rewriter import HANDLERS, REFUSED, RewriteContext
from tvm_intsmooth.quantize.states import Acc, Affine, Const, Int8, State, Unary

INPUT_DTYPES = ("uint8", "int16", "int32")


@tvm.transform.module_pass(opt_level=0, name="QuantizeToInteger")
class QuantizeToInteger:
    """Rewrite a float classifier into integer-only arithmetic.

    Args:
        calibration: max |value| of every float activation, by Relax variable name.
        input_dtype: dtype of the integer pixel input ("uint8", or "int16" to leave room for
            noise).
        input_scale: real value of one integer input step (1/255: pixel q stands for q/255).
        func_name: the function to rewrite.
    """

    def __init__(
        self,
        calibration: Mapping[str, float],
        input_dtype: str = "uint8",
        input_scale: float = 1.0 / 255.0,
        func_name: str = "main",
    ):
        if input_dtype not in INPUT_DTYPES:
            raise ValueError(f"input_dtype must be one of {INPUT_DTYPES}, got {input_dtype!r}")
        self.calibration = dict(calibration)
        self.input_dtype = input_dtype
        self.input_scale = input_scale
        self.func_name = func_name

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        rewriter = _IntegerRewriter(self.calibration, self.input_dtype, self.input_scale)
        func = rewriter.rewrite(mod[self.func_name])
        if self.input_dtype == "uint8":  # wider inputs are bounded where their range is known
            check_accumulator_bounds(func, what=f"QuantizeToInteger ({self.func_name})")
        return replace_function(mod, self.func_name, func)


class _IntegerRewriter:
    def __init__(self, calibration, input_dtype, input_scale):
        self.calibration = calibration
        self.input_dtype = input_dtype
        self.input_scale = input_scale

    def rewrite(self, func: relax.Function) -> relax.Function:
        if len(func.params) != 1:
            raise UnsupportedModelError("QuantizeToInteger: the classifier must take one input.")
        param = func.params[0]
        x = relax.Var(param.name, relax.TensorType(param.ty.shape, self.input_dtype))
        bb = relax.BlockBuilder()
        ctx = RewriteContext(bb, self.calibration)
        states: dict[relax.Var, State] = {
            param: Affine(x, np.asarray(self.input_scale), np.asarray(0.0))
        }
        with bb.function("main", [x]):
            with bb.dataflow():
                for var, value in dataflow_bindings(func):
                    states[var] = self._rewrite_binding(ctx, states, var, value)
                logits = self._logits(ctx, states[func.body.body])
                out = bb.emit_output(logits)
            bb.emit_func_output(out)
        return bb.get()["main"]

    def _rewrite_binding(self, ctx, states, var, value) -> State:
        if isinstance(value, relax.Var):
            return states[value]
        if not isinstance(value, relax.Call) or not isinstance(value.op, tvm.ir.Op):
            raise UnsupportedModelError(f"QuantizeToInteger: cannot rewrite binding {var.name}")
        handler = HANDLERS.get(value.op.name)
        if value.op.name in REFUSED:
            raise UnsupportedModelError(
                f"QuantizeToInteger: operator {value.op.name} (binding {var.name}): "
                f"{REFUSED[value.op.name]}."
            )
        if handler is None:
            raise UnsupportedModelError(
                f"QuantizeToInteger: operator {value.op.name} (binding {var.name}) has no "
                f"integer rewrite; supported: {', '.join(sorted(HANDLERS))}"
            )
        args = [self._arg_state(states, a) for a in value.args]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # checked next
            return _finite(handler(ctx, value, args, var.name), value, var, args)

    @classmethod
    def _arg_state(cls, states, arg: relax.Expr) -> State | list | None:
        if isinstance(arg, relax.Var):
            return states[arg]
        if isinstance(arg, relax.Tuple):
            return [cls._arg_state(states, f) for f in arg.fields]
        if isinstance(arg, tvm.ir.GenericConst):
            return Const(arg.value.numpy())
        return None

    @staticmethod
    def _logits(ctx: RewriteContext, state: State) -> relax.Expr:
        """int32 logits on one common scale, so that their argmax is the float model's."""
        if isinstance(state, Acc) and state.lo is None and state.hi is None:
            scale = np.asarray(state.scale, np.float64)
            return ctx.requantize(state.expr, scale / scale.max(), "int32")
        if isinstance(state, Acc | Int8 | Unary):
            q = ctx.materialize(state, None)
            return ctx.emit(R.astype(q.expr, "int32"), "logits")
        raise UnsupportedModelError("QuantizeToInteger: the output does not depend on the input.")


def _finite(state: State, call: relax.Call, var: relax.Var, args: list) -> State:
    """``state`` if the numbers it carries (scales, the affine map of the input, constants) are
    finite, else an error naming the operator: the float model divides by zero or overflows
    there, and every scale after it would be NaN."""
    numbers = [getattr(state, field, None) for field in ("a", "c", "scale", "value")]
    arrays = [np.asarray(n, np.float64) for n in numbers if n is not None and not callable(n)]
    if all(np.all(np.isfinite(a)) for a in arrays if a.dtype.kind == "f"):
        return state
    zeros = [
        f"a constant of shape {tuple(a.value.shape)} with {int(np.sum(a.value == 0))} zero(s)"
        for a in args[1:]
        if isinstance(a, Const) and call.op.name == "relax.divide" and np.any(a.value == 0)
    ]
    why = f"it divides by {zeros[0]}" if zeros else "the model divides by zero or overflows there"
    raise UnsupportedModelError(
        f"QuantizeToInteger: operator {call.op.name} (binding {var.name}) gives values that are "
        f"not finite (inf or NaN) for every input: {why} (a normalization with a zero std, a "
        "batch norm with zero variance and epsilon?). Fix that constant in the model"
    )
