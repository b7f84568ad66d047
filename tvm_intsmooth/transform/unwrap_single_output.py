"""UnwrapSingleOutput: ``main`` returning ``(logits,)`` made to return ``logits``.

``tvm.relax.frontend.torch.from_exported_program`` returns a tuple of the module's outputs even
when there is one; a classifier returns one tensor.
"""

from __future__ import annotations

import tvm
from tvm import relax


@relax.expr_functor.mutator
class _Unwrapper(relax.PyExprMutator):
    def visit_function_(self, func: relax.Function) -> relax.Expr:
        func = super().visit_function_(func)
        ret = func.ret_ty
        if not (isinstance(ret, relax.TupleType) and len(ret.fields) == 1):
            return func
        body = relax.SeqExpr(func.body.blocks, relax.TupleGetItem(func.body.body, 0))
        return relax.Function(func.params, body, ret.fields[0], func.is_pure, func.attrs)


@tvm.transform.module_pass(opt_level=0, name="UnwrapSingleOutput")
class UnwrapSingleOutput:
    """Return the only field of a 1-tuple output of ``main`` as the output."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        names = [gv.name_hint for gv in mod.get_global_vars()]
        if "main" not in names or not isinstance(mod["main"], relax.Function):
            return mod
        mutator = _Unwrapper(mod)
        gv = mod.get_global_var("main")
        mutator.builder_.update_func(gv, mutator.visit_expr(mod["main"]))
        seq = [relax.transform.Normalize(), relax.transform.CanonicalizeBindings()]
        return tvm.transform.Sequential(seq)(mutator.builder_.get())
