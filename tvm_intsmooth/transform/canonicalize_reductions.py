"""CanonicalizeReductions: one spelling for every reduction axis and for global average pooling.

The frontends write the same reduction in several ways: ``torch.export`` gives
``mean(x, axis=[-2, -1])``, ONNX ``ReduceMean`` may list ``axes=[3, 2]``, PyTorch's
``AdaptiveAvgPool2d(1)`` becomes ``nn.adaptive_avg_pool2d(x, output_size=[1, 1])``. This pass
writes every reduction (``mean``, ``sum``, ``max``, ``min``) with non-negative, sorted axes,
every ``concat``/``softmax``/``log_softmax`` with a non-negative axis, and an adaptive average
pool to 1 x 1 as ``mean(x, axis=[2, 3], keepdims=True)`` (ONNX GlobalAveragePool's form), which
QuantizeToInteger rewrites as an int32 sum.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax import op as R

from tvm_intsmooth.transform.canonical_forms import op_name, run_on_relax_functions

REDUCTIONS = {"relax.mean": R.mean, "relax.sum": R.sum, "relax.max": R.max, "relax.min": R.min}
AXIS_OPS = {"relax.concat", "relax.nn.softmax", "relax.nn.log_softmax"}


def _rank(expr: relax.Expr) -> int:
    ty = expr.ty
    if isinstance(ty, relax.TupleType):
        ty = ty.fields[0]
    return int(ty.ndim)


@relax.expr_functor.mutator
class _ReductionRewriter(relax.PyExprMutator):
    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        name = op_name(call)
        if name in REDUCTIONS and call.attrs.axis is not None:
            rank = _rank(call.args[0])
            axes = sorted({int(a) % rank for a in call.attrs.axis})
            if axes != [int(a) for a in call.attrs.axis]:
                return REDUCTIONS[name](call.args[0], axis=axes, keepdims=call.attrs.keepdims)
        elif name in AXIS_OPS and call.attrs.axis is not None and int(call.attrs.axis) < 0:
            axis = int(call.attrs.axis) % _rank(call.args[0])
            if name == "relax.concat":
                return R.concat(call.args[0], axis=axis)
            fn = R.nn.softmax if name == "relax.nn.softmax" else R.nn.log_softmax
            return fn(call.args[0], axis=axis)
        elif name == "relax.nn.adaptive_avg_pool2d":
            attrs = call.attrs
            size = None if attrs.output_size is None else [int(v) for v in attrs.output_size]
            if size in ([1, 1], [1]) and attrs.layout == "NCHW" and attrs.out_layout == "NCHW":
                return R.mean(call.args[0], axis=[2, 3], keepdims=True)
        return call


@tvm.transform.module_pass(opt_level=0, name="CanonicalizeReductions")
class CanonicalizeReductions:
    """Non-negative sorted reduction axes; adaptive average pooling to 1x1 as a spatial mean."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        return run_on_relax_functions(_ReductionRewriter(mod), mod)
