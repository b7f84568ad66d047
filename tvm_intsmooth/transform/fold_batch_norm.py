"""FoldBatchNorm: inference batch normalization folded into the layer before it.

TVM's frontends emit ``nn.batch_norm(x, gamma, beta, mean, var)`` (a tuple, of which the graph
reads item 0) for ONNX BatchNormalization and PyTorch's ``BatchNorm2d``/``BatchNorm1d`` in eval
mode. With ``s = gamma / sqrt(var + eps)`` and ``t = beta - mean * s`` (computed in float64):

- after a convolution ``conv2d(data, W) [+ b]`` (or a dense layer ``matmul(data, W) [+ b]``)
  that nothing else reads, it becomes ``conv2d(data, W * s) + (b * s + t)``, the new weights and
  bias rounded once to float32;
- elsewhere, ``x * s + t`` per channel (which QuantizeToInteger folds into a scale and a bias).

The statistics must be constants; the batch norm must be in inference mode.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax import op as R

from tvm_intsmooth.errors import UnsupportedModelError
from tvm_intsmooth.transform.canonical_forms import (
    const_value,
    op_name,
    run_on_relax_functions,
    use_counts,
)


def _affine(call: relax.Call) -> tuple[np.ndarray, np.ndarray] | None:
    """(s, t) of an inference batch_norm with constant statistics, in float64."""
    params = [const_value(a) for a in call.args[1:5]]
    if any(p is None for p in params):
        return None
    gamma, beta, mean, var = (np.asarray(p, np.float64).reshape(-1) for p in params)
    attrs = call.attrs
    if not bool(attrs.scale):
        gamma = np.ones_like(var)
    if not bool(attrs.center):
        beta = np.zeros_like(var)
    scale = gamma / np.sqrt(var + float(attrs.epsilon))
    return scale, beta - mean * scale


@relax.expr_functor.mutator
class _BatchNormFolder(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule):
        super().__init__(mod)
        self.uses: dict[relax.Var, int] = {}
        self.original: dict[relax.Var, relax.Expr] = {}

    def visit_function_(self, func: relax.Function) -> relax.Expr:
        if isinstance(func.body, relax.SeqExpr):
            self.uses = use_counts(func)
            self.original = {b.var: b.value for block in func.body.blocks for b in block.bindings}
        return super().visit_function_(func)

    def _single_use_value(self, var: relax.Expr) -> relax.Expr | None:
        if isinstance(var, relax.Var) and self.uses.get(var, 0) == 1:
            return self.original.get(var)
        return None

    def _producer(self, x: relax.Expr):
        """(kind, data, weight, bias, call) of a conv2d / matmul with a constant weight (and an
        optional constant bias add) that only the batch norm reads, else None."""
        value = self._single_use_value(x)
        bias = None
        if op_name(value) == "relax.add":
            consts = [const_value(a) for a in value.args]
            others = [a for a, c in zip(value.args, consts, strict=True) if c is None]
            if len(others) == 1 and any(c is not None for c in consts):
                bias = next(c for c in consts if c is not None)
                inner = self._single_use_value(others[0])
                if op_name(inner) in ("relax.nn.conv2d", "relax.matmul"):
                    value = inner
                else:
                    return None
        name = op_name(value)
        if name not in ("relax.nn.conv2d", "relax.matmul"):
            return None
        weight = const_value(value.args[1])
        if weight is None or weight.dtype.kind != "f":
            return None
        if name == "relax.nn.conv2d":
            attrs = value.attrs
            if attrs.data_layout != "NCHW" or attrs.kernel_layout != "OIHW" or weight.ndim != 4:
                return None
            out_channels = weight.shape[0]
        else:
            if weight.ndim != 2:
                return None
            out_channels = weight.shape[1]
        if bias is None:
            bias = np.zeros(out_channels, np.float32)
        if bias.size != out_channels:
            return None
        return name, value.args[0], weight, np.asarray(bias).reshape(-1), value

    def visit_tuple_getitem_(self, op: relax.TupleGetItem) -> relax.Expr:
        bn = op.tuple_value
        call = self.original.get(bn) if isinstance(bn, relax.Var) else bn
        if op_name(call) != "relax.nn.batch_norm" or op.index != 0:
            return super().visit_tuple_getitem_(op)
        if bool(call.attrs.training):
            raise UnsupportedModelError(
                "FoldBatchNorm: a batch_norm in training mode; export the model in eval mode "
                "(model.eval() before torch.onnx.export / torch.export)."
            )
        affine = _affine(call)
        if affine is None:
            raise UnsupportedModelError(
                "FoldBatchNorm: a batch_norm whose statistics are computed at run time; only "
                "constant (trained) statistics can be folded."
            )
        scale, shift = affine
        x = call.args[0]
        axis = int(call.attrs.axis) % len(x.ty.shape)
        producer = self._producer(x) if axis == 1 else None
        if producer is not None:
            return self._fold(producer, scale, shift)
        rank = len(x.ty.shape)
        shape = [1] * rank
        shape[axis] = -1
        data = self.visit_expr(x)
        scaled = self.builder_.emit(
            R.multiply(data, relax.const(scale.astype(np.float32).reshape(shape), "float32"))
        )
        return R.add(scaled, relax.const(shift.astype(np.float32).reshape(shape), "float32"))

    def _fold(self, producer, scale, shift) -> relax.Expr:
        kind, data, weight, bias, layer = producer
        data = self.visit_expr(data)
        folded_bias = (bias * scale + shift).astype(np.float32)
        if kind == "relax.nn.conv2d":
            w = (weight * scale.reshape(-1, 1, 1, 1)).astype(np.float32)
            a = layer.attrs
            conv = R.nn.conv2d(
                data,
                relax.const(w, "float32"),
                strides=a.strides,
                padding=a.padding,
                dilation=a.dilation,
                groups=a.groups,
                out_dtype=a.out_dtype,
            )
            out = self.builder_.emit(conv)
            return R.add(out, relax.const(folded_bias.reshape(1, -1, 1, 1), "float32"))
        w = (weight * scale.reshape(1, -1)).astype(np.float32)
        out = self.builder_.emit(R.matmul(data, relax.const(w, "float32")))
        return R.add(out, relax.const(folded_bias, "float32"))


@tvm.transform.module_pass(opt_level=0, name="FoldBatchNorm")
class FoldBatchNorm:
    """Fold every inference ``nn.batch_norm`` into the conv/dense before it, or into a
    per-channel multiply and add."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        return run_on_relax_functions(_BatchNormFolder(mod), mod)
