"""FoldPadding: an explicit constant pad of the spatial axes folded into the conv/pool after it.

``torch.export`` writes a ``padding="same"`` convolution with an even kernel as ``nn.pad`` (one
more row/column at the bottom/right) followed by a convolution with symmetric padding. A pad
with zeros of the last two axes of an NCHW tensor that only a ``conv2d`` (or an ``avg_pool2d``
that counts the padding) reads is added to that operator's own padding; a pad with -inf (or the
dtype's lowest value) that only a ``max_pool2d`` reads, to the pool's. QuantizeToInteger then
pads in integers (zero, or int8's -128 for max pooling) as the operator defines it.
"""

from __future__ import annotations

import math

import tvm
from tvm import relax
from tvm.relax import op as R

from tvm_intsmooth.transform.canonical_forms import (
    op_name,
    prim_float,
    run_on_relax_functions,
    use_counts,
)


def _spatial_pad(call: relax.Call) -> tuple[tuple[int, int, int, int], float] | None:
    """((top, left, bottom, right), value) of a constant pad of axes 2, 3 only, else None."""
    attrs = call.attrs
    if str(attrs.pad_mode) != "constant" or int(call.args[0].ty.ndim) != 4:
        return None
    width = [int(v) for v in attrs.pad_width]
    if len(width) != 8 or any(width[:4]) or min(width) < 0:
        return None
    value = prim_float(attrs.pad_value)
    if value is None:
        return None
    return (width[4], width[6], width[5], width[7]), value


@relax.expr_functor.mutator
class _PadFolder(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule):
        super().__init__(mod)
        self.uses: dict[relax.Var, int] = {}

    def visit_function_(self, func: relax.Function) -> relax.Expr:
        self.uses = use_counts(func) if isinstance(func.body, relax.SeqExpr) else {}
        return super().visit_function_(func)

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        name = op_name(call)
        if name not in ("relax.nn.conv2d", "relax.nn.avg_pool2d", "relax.nn.max_pool2d"):
            return super().visit_call_(call)
        data = call.args[0]
        new_data = self.visit_expr(data)
        pad = self.lookup_binding(new_data) if isinstance(new_data, relax.Var) else None
        if op_name(pad) != "relax.nn.pad" or self.uses.get(data, 0) != 1:
            return super().visit_call_(call)
        spatial = _spatial_pad(pad)
        if spatial is None or not _foldable(call, spatial[1]):
            return super().visit_call_(call)
        extra, _ = spatial
        attrs = call.attrs
        padding = [int(p) + e for p, e in zip(attrs.padding, extra, strict=True)]
        source = pad.args[0]
        if name == "relax.nn.conv2d":
            return R.nn.conv2d(
                source,
                self.visit_expr(call.args[1]),
                strides=attrs.strides,
                padding=padding,
                dilation=attrs.dilation,
                groups=attrs.groups,
                data_layout=attrs.data_layout,
                kernel_layout=attrs.kernel_layout,
                out_layout=attrs.out_layout,
                out_dtype=attrs.out_dtype,
            )
        pool = R.nn.avg_pool2d if name == "relax.nn.avg_pool2d" else R.nn.max_pool2d
        return pool(
            source,
            pool_size=attrs.pool_size,
            strides=attrs.strides,
            padding=padding,
            dilation=attrs.dilation,
            ceil_mode=attrs.ceil_mode,
            count_include_pad=attrs.count_include_pad,
            layout=attrs.layout,
            out_layout=attrs.out_layout,
        )


def _foldable(call: relax.Call, value: float) -> bool:
    name = op_name(call)
    attrs = call.attrs
    if name == "relax.nn.conv2d":
        return value == 0.0 and attrs.data_layout == "NCHW"
    if attrs.layout != "NCHW" or bool(attrs.ceil_mode):
        return False  # ceil mode counts windows from the padded size: keep the pad explicit
    if name == "relax.nn.avg_pool2d":
        return value == 0.0 and bool(attrs.count_include_pad)
    return value == -math.inf


@tvm.transform.module_pass(opt_level=0, name="FoldPadding")
class FoldPadding:
    """Fold a constant spatial ``nn.pad`` into the convolution or pooling that reads it."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        return run_on_relax_functions(_PadFolder(mod), mod)
