"""CanonicalizePRelu: ``where(x > 0, x, alpha * x)`` with a constant slope as one operator.

TVM's PyTorch frontend writes ``nn.PReLU`` (and a hand-written leaky ReLU) as a select of ``x``
and ``alpha * x`` on ``x > 0``. With ``alpha`` a constant scalar this is ``nn.leakyrelu(x,
alpha)``; with one slope per channel (axis 1), ``nn.prelu(x, alpha, axis=1)``: the forms
QuantizeToInteger rewrites as an exact int32 select. ``x >= 0`` selects the same values.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax import op as R

from tvm_intsmooth.transform.canonical_forms import const_value, op_name, run_on_relax_functions


def _same(a: relax.Expr, b: relax.Expr) -> bool:
    return a.same_as(b)


@relax.expr_functor.mutator
class _PReluRewriter(relax.PyExprMutator):
    def _value(self, expr: relax.Expr) -> relax.Expr | None:
        return self.lookup_binding(expr) if isinstance(expr, relax.Var) else None

    def _slope(self, scaled: relax.Expr, x: relax.Expr) -> np.ndarray | None:
        """alpha if ``scaled`` is ``alpha * x`` with a constant alpha."""
        call = self._value(scaled)
        if op_name(call) != "relax.multiply":
            return None
        a, b = call.args
        if _same(b, x) and const_value(a) is not None:
            return const_value(a)
        if _same(a, x) and const_value(b) is not None:
            return const_value(b)
        return None

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if op_name(call) != "relax.where":
            return call
        cond, x, scaled = call.args
        test = self._value(cond)
        if op_name(test) not in ("relax.greater", "relax.greater_equal"):
            return call
        zero = const_value(test.args[1])
        if not _same(test.args[0], x) or zero is None or np.any(zero != 0):
            return call
        alpha = self._slope(scaled, x)
        ty = x.ty
        if alpha is None or not isinstance(ty, relax.TensorType) or "float" not in str(ty.dtype):
            return call
        if alpha.size == 1:
            return R.nn.leakyrelu(x, float(alpha.reshape(())))
        rank = int(ty.ndim)
        channels = ty.shape[1] if rank >= 2 else None
        per_channel = alpha.reshape(-1)
        expected = [1, per_channel.size] + [1] * (rank - 2)
        squeezed = list(alpha.shape)
        while len(squeezed) < rank:
            squeezed.insert(0, 1)
        if squeezed != expected or int(channels) != per_channel.size:
            return call
        return R.nn.prelu(x, relax.const(per_channel.astype(str(ty.dtype))), axis=1)


@tvm.transform.module_pass(opt_level=0, name="CanonicalizePRelu")
class CanonicalizePRelu:
    """Rewrite ``where(x > 0, x, alpha * x)`` (constant alpha) into leakyrelu / prelu."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        return run_on_relax_functions(_PReluRewriter(mod), mod)
