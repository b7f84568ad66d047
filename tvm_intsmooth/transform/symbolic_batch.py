"""SymbolicBatch: ``main``'s batch dimension as one symbolic variable named ``batch``.

The smoothed classifier chooses its own batch, so the float classifier must take any. TVM's
frontends name the batch after the model (``N`` from an ONNX ``dim_param``, ``s77`` from
``torch.export``); this pass renames it ``batch``, so that every frontend gives the same module
(and the same tuned-schedule keys). A model exported with a fixed batch of 1 (``from_onnx`` with
a ``shape_dict``, ``torch.export`` without ``dynamic_shapes``) gets a symbolic batch where the
graph allows it: every binding is re-inferred with ``batch`` for the 1, and a reshape to
``[1, ...]`` of a batch-first tensor becomes a reshape to ``[batch, ...]``. If the result does
not again map ``batch x ...`` to ``batch x classes`` (a constant batch-1 shape somewhere else),
the module is left as it is and the importer reports the fixed batch.
"""

from __future__ import annotations

import tvm
from tvm import relax, tirx
from tvm.relax import op as R

from tvm_intsmooth.transform.canonical_forms import op_name

BATCH = "batch"


def _batch_dim(ty) -> object:
    if isinstance(ty, relax.TensorType) and ty.shape is not None and ty.ndim >= 1:
        return ty.shape[0]
    return None


def _is_one(dim) -> bool:
    return isinstance(dim, tirx.IntImm) and int(dim) == 1


@relax.expr_functor.mutator
class _BatchRewriter(relax.PyExprMutator):
    """Re-emits ``main`` with a new parameter of batch ``batch``."""

    def __init__(self, mod: tvm.IRModule, batch: tirx.Var):
        super().__init__(mod)
        self.batch = batch

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        new = super().visit_call_(call)
        if op_name(new) != "relax.reshape" or not isinstance(new.args[1], relax.ShapeExpr):
            return new
        data_batch = _batch_dim(new.args[0].ty)
        dims = list(new.args[1].values)
        if isinstance(data_batch, tirx.Var) and dims and _is_one(dims[0]):
            return R.reshape(new.args[0], relax.ShapeExpr([data_batch, *dims[1:]]))
        return new


def _rename(func: relax.Function, old: tirx.Var) -> relax.Function:
    return func.bind_symbolic_vars({old: tirx.Var(BATCH, "int64")})


def _generalize(mod: tvm.IRModule, func: relax.Function) -> relax.Function | None:
    """``func`` with its fixed batch of 1 made symbolic, or None where the graph forbids it."""
    (param,) = func.params
    batch = tirx.Var(BATCH, "int64")
    shape = [batch, *list(param.ty.shape)[1:]]
    new_param = relax.Var(param.name, relax.TensorType(shape, param.ty.dtype))
    rewriter = _BatchRewriter(mod, batch)
    rewriter.set_var_remap(param, new_param)
    try:
        body = rewriter.visit_with_new_scope(func.body)
        attrs = func.attrs
        out = relax.Function([new_param], body, None, func.is_pure, attrs)
        out = relax.transform.Normalize()(tvm.IRModule({"main": out}))["main"]
    except (tvm.TVMError, ValueError, TypeError):
        return None
    ret = out.ret_ty
    if isinstance(ret, relax.TupleType) and len(ret.fields) == 1:
        ret = ret.fields[0]
    ret_batch = _batch_dim(ret)
    if not (isinstance(ret_batch, tirx.Var) and ret_batch.same_as(batch)):
        return None
    return out


@tvm.transform.module_pass(opt_level=0, name="SymbolicBatch")
class SymbolicBatch:
    """Rename ``main``'s symbolic batch to ``batch``; make a fixed batch of 1 symbolic where
    the graph allows it."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        names = [gv.name_hint for gv in mod.get_global_vars()]
        if "main" not in names or not isinstance(mod["main"], relax.Function):
            return mod
        func = mod["main"]
        if len(func.params) != 1 or not isinstance(func.params[0].ty, relax.TensorType):
            return mod
        dim = _batch_dim(func.params[0].ty)
        if isinstance(dim, tirx.Var):
            new = func if dim.name == BATCH else _rename(func, dim)
        elif _is_one(dim):
            new = _generalize(mod, func)
        else:
            new = None
        if new is None or new.same_as(func):
            return mod
        out = tvm.IRModule({gv: f for gv, f in mod.functions_items()}, attrs=mod.attrs)
        out["main"] = new
        return out
