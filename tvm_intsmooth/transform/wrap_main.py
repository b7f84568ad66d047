"""Building a new ``main`` around the current one, which is then inlined into it."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tvm
from tvm import relax

INNER_NAME = "intsmooth_inner"


def wrap_main(
    mod: tvm.IRModule,
    params: Sequence[relax.Var],
    build_body: Callable[[relax.BlockBuilder, tvm.ir.GlobalVar], relax.Expr],
    bind_symbols: dict[str, int] | None = None,
) -> tvm.IRModule:
    """Replace ``main`` by a function of ``params`` whose body ``build_body`` emits.

    ``build_body(bb, inner)`` emits dataflow bindings and returns the output; ``inner`` is the
    old ``main`` (with symbolic dimensions bound by ``bind_symbols``) as a private function, inlined
    afterwards so that the result is again one dataflow block.
    """
    inner = mod["main"]
    if bind_symbols:
        inner = inner.bind_symbolic_vars(bind_symbols)
    inner = inner.without_attr("global_symbol")
    functions = {gv: f for gv, f in mod.functions_items() if gv.name_hint != "main"}
    bb = relax.BlockBuilder(tvm.IRModule(functions, attrs=mod.attrs))
    inner_gv = bb.add_func(inner, INNER_NAME)
    with bb.function("main", list(params)):
        with bb.dataflow():
            out = bb.emit_output(build_body(bb, inner_gv))
        bb.emit_func_output(out)
    wrapped = bb.get()
    seq = tvm.transform.Sequential(
        [relax.transform.InlinePrivateFunctions(), relax.transform.DeadCodeElimination(["main"])]
    )
    return seq(wrapped)
