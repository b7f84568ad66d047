"""CanonicalizeClip: every clamp of an activation by constants becomes one ``relax.clip``.

TVM's ONNX frontend turns ``Clip(x, min, max)`` with min/max inputs (ReLU6) into two ``call_tir``
of TIR ``maximum``/``minimum`` against a scalar; the PyTorch frontend writes ``relu6`` /
``hardtanh`` as two clips with one infinite bound; graphs also spell a clamp as
``relax.maximum``/``relax.minimum`` with a scalar constant or as ``nn.relu6``. This pass rewrites
each into ``R.clip(x, lo, hi)`` and merges a clip of a clip that has no other use, so that
QuantizeToInteger folds the clamp into the requantization as for ONNX ``Relu``/``Clip``.

A ``call_tir`` is rewritten only when its PrimFunc is, read from its TIR, exactly
``out[i...] = max(a[i...], s[()])`` (or ``min``) with ``s`` a constant scalar: a PrimFunc that
merely has that name is left alone.
"""

from __future__ import annotations

import math

import numpy as np
import tvm
import tvm_ffi
from tvm import relax, tirx
from tvm.relax import op as R

from tvm_intsmooth.transform.canonical_forms import (
    const_value,
    op_name,
    prim_float,
    run_on_relax_functions,
    use_counts,
)


def scalar_clamp_kind(prim: tirx.PrimFunc) -> str | None:
    """``"max"`` / ``"min"`` if ``prim`` computes ``out = max/min(a, s[()])`` elementwise (a and
    s its first two parameters, in either operand order), else None."""
    stores: list = []
    tvm_ffi.structural_walk(
        prim.body,
        lambda node: stores.append(node) if isinstance(node, tirx.BufferStore) else None,
        order="pre",
    )
    if len(stores) != 1 or len(prim.params) != 3:
        return None
    store = stores[0]
    value = store.value
    kind = {tirx.Max: "max", tirx.Min: "min"}.get(type(value))
    if kind is None:
        return None
    loads = [value.a, value.b]
    if not all(isinstance(load, tvm.ir.TensorLoad) for load in loads):
        return None
    a, s, out = prim.params
    tensor = [ld for ld in loads if len(ld.indices) == len(store.indices)]
    scalar = [ld for ld in loads if len(ld.indices) == 0]
    if len(tensor) != 1 or len(scalar) != 1:
        return None
    if not (
        _same_buffer(tensor[0].source, a)
        and _same_buffer(scalar[0].source, s)
        and _same_buffer(store.buffer, out)
    ):
        return None
    pairs = zip(tensor[0].indices, store.indices, strict=True)
    same_index = all(tvm_ffi.structural_equal(a, b) for a, b in pairs)
    return kind if same_index else None


def _same_buffer(buffer, param) -> bool:
    return buffer.same_as(param) or buffer.name == param.name


def _bounds(expr: relax.Call) -> tuple[float, float]:
    lo, hi = prim_float(expr.args[1]), prim_float(expr.args[2])
    return (-math.inf if lo is None else lo), (math.inf if hi is None else hi)


@relax.expr_functor.mutator
class _ClipRewriter(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule):
        super().__init__(mod)
        self.mod = mod
        self.uses: dict[relax.Var, int] = {}

    def visit_function_(self, func: relax.Function) -> relax.Expr:
        self.uses = use_counts(func) if isinstance(func.body, relax.SeqExpr) else {}
        return super().visit_function_(func)

    def _scalar_operand(self, call: relax.Call) -> tuple[str, relax.Expr, np.ndarray] | None:
        """(``"max"``/``"min"``, x, scalar) of max/min(x, constant scalar), TIR or Relax."""
        name = op_name(call)
        if name in ("relax.maximum", "relax.minimum"):
            for a, b in (call.args, call.args[::-1]):
                value = const_value(b)
                if value is not None and value.size == 1 and const_value(a) is None:
                    return name.removeprefix("relax.")[:3], a, value
            return None
        if name != "relax.call_tir":
            return None
        gv, args = call.args[0], call.args[1]
        func = self.mod[gv] if gv in self.mod.get_global_vars() else None
        if not isinstance(func, tirx.PrimFunc) or not isinstance(args, relax.Tuple):
            return None
        value = const_value(args.fields[1]) if len(args.fields) == 2 else None
        kind = scalar_clamp_kind(func) if value is not None and value.size == 1 else None
        return None if kind is None else (kind, args.fields[0], value)

    def _clamp(self, call: relax.Call) -> tuple[relax.Expr, float, float] | None:
        """(x, lo, hi) if ``call`` clamps x between constants."""
        name = op_name(call)
        if name == "relax.clip":
            return (call.args[0], *_bounds(call))
        if name == "relax.nn.relu6":
            return call.args[0], 0.0, 6.0
        found = self._scalar_operand(call)
        if found is None:
            return None
        kind, x, scalar = found
        if not tvm_ffi.structural_equal(call.ty, x.ty):
            return None  # a broadcast, not a clamp
        bound = float(np.asarray(scalar).reshape(()))
        if math.isnan(bound):
            return None
        return (x, bound, math.inf) if kind == "max" else (x, -math.inf, bound)

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        clamp = self._clamp(call)
        if clamp is None:
            return super().visit_call_(call)
        x, lo, hi = clamp
        new_x = self.visit_expr(x)
        inner = self.lookup_binding(new_x) if isinstance(new_x, relax.Var) else None
        if op_name(inner) == "relax.clip" and self.uses.get(x, 0) == 1:
            ilo, ihi = _bounds(inner)
            new_x, lo, hi = inner.args[0], max(lo, ilo), min(hi, ihi)
        return R.clip(new_x, lo, hi)


@tvm.transform.module_pass(opt_level=0, name="CanonicalizeClip")
class CanonicalizeClip:
    """Rewrite TIR/elementwise clamps by constants into ``relax.clip`` and merge nested clips."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        return run_on_relax_functions(_ClipRewriter(mod), mod)
