"""Small helpers shared by the canonicalization passes (not a pass itself).

The canonicalization passes (``canonicalize_*.py``, ``fold_*.py``, ``symbolic_batch.py``,
``drop_monotone_head.py``) bring what TVM's frontends emit into the forms that
``QuantizeToInteger`` rewrites; each is a module pass over a private ``PyExprMutator``.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax


def const_value(expr: relax.Expr) -> np.ndarray | None:
    """The numpy value of a Relax constant (None for anything else)."""
    if isinstance(expr, tvm.ir.GenericConst):
        return expr.value.numpy()
    return None


def prim_float(expr) -> float | None:
    """The value of a PrimValue / FloatImm / IntImm argument (None if not a literal)."""
    value = getattr(expr, "value", expr)
    if isinstance(value, tvm.tirx.FloatImm | tvm.tirx.IntImm):
        return float(value.value)
    if isinstance(value, int | float):
        return float(value)
    return None


def use_counts(func: relax.Function) -> dict[relax.Var, int]:
    """How many bindings (and the function's result) use each variable of ``func``."""
    counts: dict[relax.Var, int] = {}
    for block in func.body.blocks:
        for binding in block.bindings:
            for var in relax.analysis.free_vars(binding.value):
                counts[var] = counts.get(var, 0) + 1
    for var in relax.analysis.free_vars(func.body.body):
        counts[var] = counts.get(var, 0) + 1
    return counts


def op_name(expr: relax.Expr | None) -> str | None:
    """``"relax.nn.conv2d"`` for a call of that operator, else None."""
    if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
        return expr.op.name
    return None


def normalize_axis(axis: int, rank: int) -> int:
    return int(axis) % rank if rank > 0 else int(axis)


def run_on_relax_functions(mutator: relax.PyExprMutator, mod: tvm.IRModule) -> tvm.IRModule:
    """Apply ``mutator`` to every Relax function of ``mod``; the result's module."""
    for gv, func in mod.functions_items():
        if isinstance(func, relax.Function):
            mutator.builder_.update_func(gv, mutator.visit_expr(func))
    return mutator.builder_.get()
