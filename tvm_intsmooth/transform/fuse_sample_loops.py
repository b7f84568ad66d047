"""FuseSampleLoops: a run of per-sample kernels as one kernel, one parallel loop over the samples.

After scheduling, the outermost loop of nearly every kernel of a smoothed network runs in parallel
over the batch: a loop over the samples, or one fused with spatial axes (``n * m + r``). Called one
by one, each kernel is a VM call, a start of the thread pool and a barrier, and writes its whole
batch's output before the next kernel reads it back (a ResNet-20 activation is 1.6 MB at batch
100, more than a core's L2). This pass merges each run of consecutive such ``call_tir`` bindings
(TVM's FuseTIR) and then the run's parallel loops into one::

    for n in parallel(B):       # each sample through every kernel of the run
        kernel_1's body at n    # its loop nest and schedule as they were
        kernel_2's body at n
        ...

so that a sample's values stay in its thread's caches, and the run is one call with one barrier.
A fused loop ``for f in parallel(B * m)`` becomes ``for r in range(m)`` with ``f = n * m + r``.

Exactness: every kernel computes the same values in the same order; only the interleaving of
samples across kernels changes. That is sound when no kernel of the run reads another sample's
values from a kernel of the same run: a kernel joins the run only if every access to its outputs,
its batch-shaped scratch buffers and the inputs that the run produced is at its own sample (each
index checked in its TIR); any other kernel ends the run (the vote count, which sums over the
batch, and kernels of another structure, such as the noise sampler, stay separate calls).
"""

from __future__ import annotations

from dataclasses import dataclass

import tvm
import tvm.sym as arith
import tvm_ffi
from tvm import relax, tirx
from tvm.s_tir import SBlockRealize

from tvm_intsmooth.schedule.root_block import root_block, top_level, with_top_level
from tvm_intsmooth.transform.canonical_forms import op_name, use_counts

GROUP_PREFIX = "per_sample"


@dataclass(frozen=True)
class SampleKernel:
    """What the run-building needs to know of a PrimFunc: its batch size and which of its
    parameters it accesses only at the sample of its parallel loop's iteration."""

    batch: int
    same_sample_params: frozenset[int]


def sample_loops(func: tirx.PrimFunc, batch: int) -> list[tirx.For] | None:
    """The top-level loops of ``func`` (s_tir form), if every top-level statement is a parallel
    loop from 0 over a multiple of ``batch``; else None."""
    root = root_block(func)
    if root is None or root.match_buffers:
        return None
    loops = top_level(func)
    for loop in loops:
        if not (
            isinstance(loop, tirx.For)
            and loop.kind == tirx.ForKind.PARALLEL
            and isinstance(loop.min, tirx.IntImm)
            and int(loop.min) == 0
            and isinstance(loop.extent, tirx.IntImm)
            and int(loop.extent) % batch == 0
            and (loop.step is None or (isinstance(loop.step, tirx.IntImm) and int(loop.step) == 1))
        ):
            return None
    return loops


def _accesses(stmt: tirx.Stmt) -> tuple[list[tuple], list]:
    """(buffer var, index expression of its first axis, extent of the region or None) of every
    access in ``stmt``, and its loops and block realizes, outer first (the variables that the
    indices are written in)."""
    found: list[tuple] = []
    scopes: list = []

    def visit(node) -> None:
        if isinstance(node, SBlockRealize | tirx.For):
            scopes.append(node)
        elif isinstance(node, tirx.BufferStore):
            found.append((node.buffer, _first(node.indices), None))
        elif isinstance(node, tvm.ir.expr.TensorLoad):
            found.append((node.source, _first(node.indices), None))
        elif isinstance(node, tvm.ir.expr.TensorRegion):
            first = _first(node.region)
            found.append((node.source, first and first.min, first and first.extent))

    tvm_ffi.structural_walk(stmt, visit, order="pre")
    return found, scopes


def _first(items):
    """The first index or range of an access, None for a 0-d buffer."""
    return items[0] if len(items) else None


def _leading_dim(buffer) -> int | None:
    """The static size of a buffer's first axis (None: 0-d, symbolic, or not a buffer)."""
    shape = getattr(buffer.ty, "shape", None)
    if not shape or not isinstance(shape[0], tirx.IntImm):
        return None
    return int(shape[0])


def _loop_accesses(loop: tirx.For, batch: int) -> dict:
    """Per buffer var accessed in ``loop``: whether every access's first index is the sample
    ``f // m`` of the loop's iteration ``f`` (``m = extent / batch``), for all ``f``."""
    ana = arith.Analyzer()
    dtype = loop.loop_var.ty.dtype
    sample, rest = tirx.Var("n", dtype), tirx.Var("r", dtype)
    m = int(loop.extent) // batch
    ana.bind(sample, tvm.ir.Range(0, batch))
    ana.bind(rest, tvm.ir.Range(0, m))
    ana.bind(loop.loop_var, sample * m + rest)
    found, scopes = _accesses(loop.body)
    for scope in scopes:  # pre-order: outer first, so that bindings nest
        if isinstance(scope, tirx.For):
            ana.bind(scope.loop_var, tvm.ir.Range.from_min_extent(scope.min, scope.extent))
            continue
        for iter_var, value in zip(scope.block.iter_vars, scope.iter_values, strict=True):
            ana.bind(iter_var.var, ana.simplify(value))
    same: dict = {}
    for buffer, index, extent in found:
        ok = (
            index is not None
            and tvm_ffi.structural_equal(ana.simplify(index), sample)
            and (extent is None or (isinstance(extent, tirx.IntImm) and int(extent) == 1))
        )
        same[buffer] = same.get(buffer, True) and ok
    return same


def sample_kernel(func: tirx.PrimFunc, num_outputs: int) -> SampleKernel | None:
    """``func`` as a member of a run (the last ``num_outputs`` params are its outputs), or None
    where it cannot be one: its loops are not over the batch, an output or a batch-shaped
    scratch buffer is accessed at another sample, or a scratch buffer is shared by two loops."""
    outputs = list(func.params[len(func.params) - num_outputs :])
    batch = _leading_dim(outputs[0]) if outputs else None
    loops = None if batch is None else sample_loops(func, batch)
    if loops is None:
        return None
    root = root_block(func)
    same: dict = {}
    loops_using: dict = {}
    for loop in loops:
        for buffer, ok in _loop_accesses(loop, batch).items():
            same[buffer] = same.get(buffer, True) and ok
            loops_using[buffer] = loops_using.get(buffer, 0) + 1
    for scratch in root.alloc_buffers:
        if _leading_dim(scratch) == batch:
            if not same.get(scratch, True):
                return None
        elif loops_using.get(scratch, 0) > 1:
            return None
    for out in outputs:
        if _leading_dim(out) != batch or not same.get(out, False):
            return None
    params = frozenset(
        i for i, p in enumerate(func.params) if _leading_dim(p) == batch and same.get(p, True)
    )
    return SampleKernel(batch, params)


def _substituted(stmt: tirx.Stmt, var: tirx.Var, value: tirx.PrimExpr) -> tirx.Stmt:
    return tirx.PrimFunc([var], stmt).specialize({var: value}).body


def merge_sample_loops(func: tirx.PrimFunc, batch: int) -> tirx.PrimFunc:
    """``func`` (a FuseTIR result of sample kernels) with its top-level parallel loops over the
    batch merged into one parallel loop over the samples, each loop's body in order inside."""
    loops = sample_loops(func, batch)
    if loops is None:
        raise ValueError("merge_sample_loops needs top-level parallel loops over the batch")
    dtype = loops[0].loop_var.ty.dtype
    sample = tirx.Var("sample", dtype)
    parts = []
    for loop in loops:
        m = int(loop.extent) // batch
        own = loop.loop_var.ty.dtype
        index = sample if own == dtype else sample.astype(own)
        if m == 1 and not loop.annotations:
            parts.append(_substituted(loop.body, loop.loop_var, index))
            continue
        rest = tirx.Var(f"{loop.loop_var.name}_in_sample", own)
        body = _substituted(loop.body, loop.loop_var, index * m + rest)
        parts.append(
            tirx.For(
                rest,
                tirx.const(0, own),
                tirx.const(m, own),
                tirx.ForKind.SERIAL,
                body,
                annotations=loop.annotations,
            )
        )
    merged = tirx.For(
        sample,
        tirx.const(0, dtype),
        tirx.const(batch, dtype),
        tirx.ForKind.PARALLEL,
        tirx.SeqStmt(parts) if len(parts) > 1 else parts[0],
    )
    new = with_top_level(func, [merged])
    return new.with_attr("tirx.is_scheduled", True)


def _sample_call(mod: tvm.IRModule, binding) -> tuple[SampleKernel, list] | None:
    """The kernel and the arguments of a ``call_tir`` binding whose PrimFunc can join a run."""
    call = binding.value
    if op_name(call) != "relax.call_tir" or len(call.args) != 2:
        return None
    func = mod[call.args[0]]
    args = call.args[1]
    if not isinstance(func, tirx.PrimFunc) or not isinstance(args, relax.Tuple):
        return None
    ty = binding.var.ty
    outputs = len(ty.fields) if isinstance(ty, relax.TupleType) else 1
    kernel = sample_kernel(func, outputs)
    return None if kernel is None else (kernel, list(args.fields))


def _runs(mod: tvm.IRModule, bindings: list) -> list[tuple[int, int, int]]:
    """(start, end, batch) of each run of at least two consecutive bindings that one per-sample
    kernel can replace: every kernel over the same batch, and every value that the run produced
    read only at the reading kernel's own sample."""
    runs: list[tuple[int, int, int]] = []
    start, batch, produced = None, None, set()
    for i, binding in enumerate([*bindings, None]):
        found = None if binding is None else _sample_call(mod, binding)
        joins = found is not None and start is not None and found[0].batch == batch
        if joins:
            kernel, args = found
            joins = all(
                j in kernel.same_sample_params
                for j, arg in enumerate(args)
                if isinstance(arg, relax.Var) and arg in produced
            )
        if not joins:
            if start is not None and i - start >= 2:
                runs.append((start, i, batch))
            start, batch, produced = (
                (None, None, set()) if found is None else (i, found[0].batch, set())
            )
        if found is not None:
            produced.add(binding.var)
    return runs


def _group(bindings: list, uses: dict) -> tuple[relax.Function, list, list]:
    """The run's bindings as a Relax function for FuseTIR (attribute ``Primitive``), its
    arguments and the run's values that it returns: those used after it (``uses``: the uses of
    each variable in the whole function, :func:`use_counts`, more than inside the run)."""
    inner: dict = {}
    for b in bindings:
        for var in relax.analysis.free_vars(b.value):
            inner[var] = inner.get(var, 0) + 1
    defined = [b.var for b in bindings]
    defined_set = set(defined)
    inputs: list = []
    for b in bindings:
        for arg in b.value.args[1].fields:
            if arg not in defined_set and not any(arg.same_as(x) for x in inputs):
                inputs.append(arg)
    params = [relax.Var(f"arg{i}", arg.ty) for i, arg in enumerate(inputs)]
    renamed = {arg: p for arg, p in zip(inputs, params, strict=True)}
    new_bindings = []
    for b in bindings:
        fields = [renamed.get(a, a) for a in b.value.args[1].fields]
        var = relax.DataflowVar(b.var.name, b.var.ty)
        renamed[b.var] = var
        call = relax.Call(
            b.value.op, [b.value.args[0], relax.Tuple(fields)], b.value.attrs, b.value.ty_args
        )
        new_bindings.append(relax.VarBinding(var, call))
    outputs = [
        v
        for v in defined
        if uses.get(v, 0) > inner.get(v, 0) or not isinstance(v, relax.DataflowVar)
    ]
    results = [renamed[v] for v in outputs]
    ret = results[0] if len(results) == 1 else relax.Tuple(results)
    func = relax.Function(params, relax.SeqExpr([relax.DataflowBlock(new_bindings)], ret), ret.ty)
    return func.with_attr("Primitive", True), inputs, outputs


@tvm.transform.module_pass(opt_level=0, name="FuseSampleLoops")
class FuseSampleLoops:
    """Replace each run of consecutive per-sample kernels of ``main`` (``call_tir`` bindings
    whose PrimFuncs loop in parallel over the batch and touch only their own sample's values
    of what the run produces) by one kernel whose single parallel loop runs each sample
    through all of them, each kernel's loop nest and schedule unchanged inside it. The same
    values, to the bit; one call and one barrier per run instead of one per kernel."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        main = mod["main"]
        if not isinstance(main.body, relax.SeqExpr):
            return mod
        builder = relax.BlockBuilder(mod)
        uses = use_counts(main)
        blocks, batches = [], {}
        for block in main.body.blocks:
            bindings = list(block.bindings)
            runs = _runs(mod, bindings) if isinstance(block, relax.DataflowBlock) else []
            if not runs:
                blocks.append(block)
                continue
            new_bindings = bindings[: runs[0][0]]
            for k, (start, end, batch) in enumerate(runs):
                func, inputs, outputs = _group(bindings[start:end], uses)
                name = f"{GROUP_PREFIX}_{bindings[start].value.args[0].name_hint}"
                gv = builder.add_func(func, name)
                batches[gv.name_hint] = batch
                call = relax.Call(gv, inputs)
                if len(outputs) == 1:
                    new_bindings.append(relax.VarBinding(outputs[0], call))
                else:
                    result = relax.DataflowVar(f"{name}_out", func.ret_ty)
                    new_bindings.append(relax.VarBinding(result, call))
                    new_bindings += [
                        relax.VarBinding(v, relax.TupleGetItem(result, i))
                        for i, v in enumerate(outputs)
                    ]
                following = runs[k + 1][0] if k + 1 < len(runs) else len(bindings)
                new_bindings += bindings[end:following]
            blocks.append(relax.DataflowBlock(new_bindings))
        if not batches:
            return mod
        out = builder.get()
        out["main"] = relax.Function(
            main.params, relax.SeqExpr(blocks, main.body.body), main.ret_ty, attrs=main.attrs
        )
        out = relax.transform.FuseTIR()(out)
        for gv, func in out.functions_items():
            if isinstance(func, tirx.PrimFunc) and gv.name_hint in batches:
                out[gv] = merge_sample_loops(func, batches[gv.name_hint])
        return out
