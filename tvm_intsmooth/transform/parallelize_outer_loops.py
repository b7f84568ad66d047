"""ParallelizeOuterLoops: the default CPU schedule of the kernels that no database and no blocked
kernel schedule covers.

TVM's CPU pipeline leaves legalized operators as serial loop nests. This pass parallelizes the
outermost loop of every block of every unscheduled PrimFunc. TE-derived loop nests (what
legalization and FuseTIR produce) put the output (spatial) axes outside the reduction axes, so the
outermost loop is spatial whenever the block has one: each output element is still computed by
one thread in the same order, and integer results are unchanged to the bit.
"""

from __future__ import annotations

import tvm
from tvm import tirx
from tvm.s_tir import Schedule


def _is_spatial_outer(sch: Schedule, block, loop) -> bool:
    """True when the outer loop feeds only data-parallel block iterators."""
    sref = sch.get_sref(block)
    loop_var = sch.get(loop).loop_var
    spatial = {i for i, iv in enumerate(sref.stmt.iter_vars) if int(iv.iter_type) == 0}
    # The block's parent sref is its innermost loop, whose body is the block realize.
    bindings = getattr(getattr(sref.parent.stmt, "body", None), "iter_values", None)
    if bindings is None:
        return False
    for i, value in enumerate(bindings):
        uses = any(v.same_as(loop_var) for v in tirx.analysis.undefined_vars(value))
        if uses and i not in spatial:
            return False
    return bool(spatial)


def parallelize_primfunc(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """The same PrimFunc with the outermost spatial loop of each root child block parallel."""
    if func.attrs is not None and "tirx.is_scheduled" in func.attrs:
        return func
    sch = Schedule(tvm.IRModule({"main": func}))
    try:
        blocks = sch.get_child_blocks(sch.get_sblock("root"))
    except Exception:  # no root block: not a TE-style function, leave it alone
        return func
    for block in blocks:
        loops = sch.get_loops(block)
        if loops and _is_spatial_outer(sch, block, loops[0]):
            sch.parallel(loops[0])
    return sch.mod["main"]


@tvm.transform.module_pass(opt_level=0, name="ParallelizeOuterLoops")
class ParallelizeOuterLoops:
    """Apply :func:`parallelize_primfunc` to every PrimFunc of the module."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        out = tvm.IRModule({gv: f for gv, f in mod.functions_items()}, attrs=mod.attrs)
        for gv, func in mod.functions_items():
            if isinstance(func, tirx.PrimFunc):
                out[gv] = parallelize_primfunc(func)
        return out
