"""DropMonotoneHead: a final Softmax, LogSoftmax or other order-preserving head is removed.

The smoothed classifier only needs the argmax of the logits. A head that preserves the order of
the classes within each row changes no argmax: ``softmax``/``log_softmax`` over the class axis
(exp(x_i) / Z with the same Z for every class of a row), strictly increasing elementwise
functions (``sigmoid``, ``tanh``, ``exp``), adding a constant scalar and multiplying by a
positive one. This pass walks back from ``main``'s output over such bindings (each read by
nothing else) and returns the value before them. The removed operators are recorded in the
function attribute ``intsmooth_dropped_head`` (outermost last), for the compiler to report.

A softmax anywhere else (inside the network) is not touched; QuantizeToInteger refuses it.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from tvm_intsmooth.transform.canonical_forms import const_value, op_name, use_counts

ATTR = "intsmooth_dropped_head"
INCREASING = {"relax.sigmoid", "relax.tanh", "relax.exp"}
CLASS_AXIS = {"relax.nn.softmax", "relax.nn.log_softmax"}


def _order_preserving_input(call: relax.Call) -> relax.Expr | None:
    """The input whose per-row class order ``call`` keeps, or None."""
    name = op_name(call)
    if name in INCREASING:
        return call.args[0]
    if name in CLASS_AXIS:
        rank = int(call.args[0].ty.ndim)
        return call.args[0] if int(call.attrs.axis) % rank == rank - 1 else None
    if name in ("relax.add", "relax.subtract", "relax.multiply", "relax.divide"):
        a, b = call.args
        ca, cb = const_value(a), const_value(b)
        if name in ("relax.add", "relax.multiply") and ca is not None and cb is None:
            a, b, ca, cb = b, a, cb, ca
        if cb is None or ca is not None or cb.size != 1:
            return None
        k = float(np.asarray(cb).reshape(()))
        if name in ("relax.add", "relax.subtract") or k > 0:
            return a
    return None


def _short(name: str) -> str:
    return name.removeprefix("relax.").removeprefix("nn.")


def drop_head(func: relax.Function) -> tuple[relax.Function, list[str]]:
    """``func`` without its order-preserving head, and the names of the removed operators."""
    body = func.body
    if not isinstance(body, relax.SeqExpr) or len(body.blocks) != 1:
        return func, []
    block = body.blocks[0]
    values = {b.var: b.value for b in block.bindings}
    uses = use_counts(func)
    out = body.body
    dropped: list[str] = []
    while isinstance(out, relax.Var) and out in values:
        call = values[out]
        if isinstance(call, relax.Var):  # an alias: follow it
            out = call
            continue
        source = _order_preserving_input(call) if isinstance(call, relax.Call) else None
        if not isinstance(source, relax.Var) or source not in values:
            break
        if uses.get(source, 0) != 1 or source.ty.ndim != 2:
            break
        dropped.append(_short(op_name(call)))
        out = source
    if not dropped:
        return func, []
    index = list(values).index(out)
    kept = list(block.bindings[: index + 1])
    result = relax.Var(out.name, out.ty)  # the new output, visible outside the block
    kept[-1] = relax.VarBinding(result, kept[-1].value)
    new_block = relax.DataflowBlock(kept) if isinstance(block, relax.DataflowBlock) else block
    new_body = relax.SeqExpr([new_block], result)
    new = relax.Function(func.params, new_body, result.ty, func.is_pure, func.attrs)
    return new.with_attr(ATTR, ", ".join(reversed(dropped))), list(reversed(dropped))


@tvm.transform.module_pass(opt_level=0, name="DropMonotoneHead")
class DropMonotoneHead:
    """Remove ``main``'s final softmax / log_softmax / increasing elementwise head."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        names = [gv.name_hint for gv in mod.get_global_vars()]
        if "main" not in names or not isinstance(mod["main"], relax.Function):
            return mod
        func, dropped = drop_head(mod["main"])
        if not dropped:
            return mod
        out = tvm.IRModule({gv: f for gv, f in mod.functions_items()}, attrs=mod.attrs)
        out["main"] = func
        return out
