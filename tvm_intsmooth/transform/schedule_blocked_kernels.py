"""ScheduleBlockedKernels: the untuned default schedule of the fused blocked convolutions.

After FuseOps/FuseTIR each blocked convolution (``blocked_kernels.conv_blocked``) is one PrimFunc
with its padding, its ``conv2d_NCHWc_int8`` reduction and its elementwise epilogue
(requantization, clamp, residual add). This pass gives every such PrimFunc a fixed schedule:

- the epilogue's blocks are inlined into its last block, which is computed right after each
  strip of output columns (``reverse_compute_at``), so the int32 accumulators are requantized
  while they are in cache and never written out whole;
- the convolution's loops are ``n, oc_chunk, oh`` (fused, parallel), ``ow`` in strips of 4, the
  reduction ``kh, kw, ic_outer, ic_group``, then 4 columns x 16 output lanes x the inner
  reduction: the target's dot-product intrinsic where it has one (``intrinsics``), else a
  vectorized int32 loop over the 16 lanes.

Integer results do not depend on the schedule; MetaSchedule databases (when tuned) replace it.
"""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import s_tir, tirx

from tvm_intsmooth.schedule.blocked_kernels import (
    CONV_BLOCK_NAME,
    DATA_MAX_ATTR,
    POOL_BLOCK_NAME,
    SUM_BLOCK_NAME,
)
from tvm_intsmooth.schedule.requantize import HIGH_BLOCK, INPUT_BLOCK

OW_BLOCK = 4  # output columns per strip (independent accumulators sharing each weight load)


def _intrin_for(target: tvm.target.Target, data_dtype: str):
    """The target's tensor intrinsic for ``data_dtype``, or None where it has none."""
    from tvm_intsmooth.schedule.intrinsics import tensor_intrin_for

    return tensor_intrin_for(target, data_dtype=data_dtype)


def _find_block(sch: s_tir.Schedule, name: str):
    """The root's child block called ``name``, or None (also for hand-written PrimFuncs)."""
    try:
        children = sch.get_child_blocks(sch.get_sblock("root"))
    except s_tir.ScheduleError:  # no root block: not a TE-style function
        return None
    names = [sch.get(b).name_hint for b in children]
    return children[names.index(name)] if name in names else None


def _is_last(sch: s_tir.Schedule, block) -> bool:
    """``block`` is the last child of the root block (nothing consumes it in the function)."""
    children = sch.get_child_blocks(sch.get_sblock("root"))
    return sch.get(children[-1]).name_hint == sch.get(block).name_hint


def _conv_data_dtype(sch: s_tir.Schedule, block) -> str:
    reads = sch.get(block).reads
    return str(reads[0].source.dtype)


def _strip(extent: int) -> int:
    return max(d for d in range(1, min(OW_BLOCK, extent) + 1) if extent % d == 0)


def _generic_conv(sch: s_tir.Schedule, block) -> None:
    """Loops as the tensorized schedule, innermost 16 lanes vectorized."""
    n, occ, oh, ow, ocb, kh, kw, ico, icf, ics = sch.get_loops(block)
    extent = int(sch.get(ow).extent)
    ow_o, ow_i = sch.split(ow, [None, _strip(extent)])
    sch.reorder(ow_o, kh, kw, ico, icf, ow_i, ics, ocb)
    sch.parallel(sch.fuse(n, occ, oh))
    sch.unroll(ow_i)
    sch.unroll(ics)
    sch.vectorize(ocb)
    init = sch.decompose_reduction(block, kh)
    sch.vectorize(sch.get_loops(init)[-1])


def _epilogue(sch: s_tir.Schedule, keep_high: bool = False):
    """Inline the elementwise blocks after the conv into the last one and return it (or
    None); with ``keep_high``, keep the int32 requantizations' operands and high products of
    the conv's result as blocks (they get the target's high-product intrinsic) and return all
    kept blocks.

    A requantization of another input (the other operand of a Sub or Add) is inlined: it does
    not depend on the tile, and computed at the tile it would cover the whole batch in a local
    buffer that the parallel iterations share."""
    root = sch.get_sblock("root")
    blocks = sch.get_child_blocks(root)
    names = [sch.get(b).name_hint for b in blocks]
    conv = blocks[names.index(CONV_BLOCK_NAME)]
    after = blocks[names.index(CONV_BLOCK_NAME) + 1 :]
    kept = []
    for block, name in zip(after[:-1], names[len(names) - len(after) : -1], strict=True):
        high = keep_high and name.startswith((INPUT_BLOCK, HIGH_BLOCK))
        if high and _depends_on(sch, block, conv):
            kept.append(block)
        else:
            sch.compute_inline(block)
    if not after:
        return None
    return [*kept, after[-1]] if keep_high else after[-1]


def _depends_on(sch: s_tir.Schedule, block, producer) -> bool:
    """Whether ``block`` reads what ``producer`` writes, directly or through other blocks."""
    target = sch.get(producer).same_as
    seen, todo = set(), list(sch.get_producers(block))
    while todo:
        rv = todo.pop()
        stmt = sch.get(rv)
        if target(stmt):
            return True
        if stmt.name_hint not in seen:
            seen.add(stmt.name_hint)
            todo += sch.get_producers(rv)
    return False


def _fuse_epilogue(sch: s_tir.Schedule, conv) -> None:
    """The epilogue computed per output row (before the conv's loops are split: they then
    nest inside the row loop)."""
    last = _epilogue(sch)
    if last is not None:
        sch.reverse_compute_at(last, sch.get_loops(conv)[2])
        lanes = sch.get_loops(last)[-1]
        sch.vectorize(lanes)


def _blocked_window(sch: s_tir.Schedule, block) -> None:
    """A blocked pooling or spatial reduction: rows of output pixels in parallel, the window
    reduction outside, the 16 lanes of a pixel innermost and vectorized; producers (padding,
    casts) inlined, consumers (an epilogue) inlined into the last one, computed per row."""
    root = sch.get_sblock("root")
    blocks = sch.get_child_blocks(root)
    names = [sch.get(b).name_hint for b in blocks]
    at = names.index(sch.get(block).name_hint)
    for producer in blocks[:at]:
        sch.compute_inline(producer)
    after = blocks[at + 1 :]
    for consumer in after[:-1]:
        sch.compute_inline(consumer)
    n, c, y, x, lane, ry, rx = sch.get_loops(block)
    sch.reorder(x, ry, rx, lane)
    if after:
        sch.reverse_compute_at(after[-1], y)
        sch.vectorize(sch.get_loops(after[-1])[-1])
    sch.parallel(sch.fuse(n, c, y))
    sch.vectorize(lane)
    init = sch.decompose_reduction(block, ry)
    sch.vectorize(sch.get_loops(init)[-1])


ROWS_BLOCK_NAME = "to_rows"
MAX_ROW_UNROLL = 512  # row values written as straight-line code (each index a constant)


def _rows(sch: s_tir.Schedule, block) -> bool:
    """The first layer's input rows (noise + pixels, padded, channels side by side): producers
    inlined, rows in parallel, each row's values unrolled, so that the pixel and channel of every
    value are constants (no division per value). False where the row is too long."""
    loops = sch.get_loops(block)
    if int(sch.get(loops[-1]).extent) > MAX_ROW_UNROLL:
        return False
    root = sch.get_sblock("root")
    blocks = sch.get_child_blocks(root)
    names = [sch.get(b).name_hint for b in blocks]
    for producer in blocks[: names.index(ROWS_BLOCK_NAME)]:
        sch.compute_inline(producer)
    sch.parallel(sch.fuse(*loops[:-1]))
    sch.unroll(loops[-1])
    return True


def schedule_blocked_conv(func: tirx.PrimFunc, target: tvm.target.Target) -> tirx.PrimFunc:
    """The scheduled PrimFunc, or ``func`` unchanged where it holds no blocked conv (or blocked
    pooling) or already has a (tuned) schedule."""
    if func.attrs is not None and "tirx.is_scheduled" in func.attrs:
        return func
    sch = s_tir.Schedule(tvm.IRModule({"main": func}))
    conv = _find_block(sch, CONV_BLOCK_NAME)
    if conv is None:
        rows = _find_block(sch, ROWS_BLOCK_NAME)
        if rows is not None and _is_last(sch, rows):
            scheduled = _rows(sch, rows)
            return sch.mod["main"].with_attr("tirx.is_scheduled", True) if scheduled else func
        window = _find_block(sch, POOL_BLOCK_NAME) or _find_block(sch, SUM_BLOCK_NAME)
        if window is None:
            return func
        _blocked_window(sch, window)
        return sch.mod["main"].with_attr("tirx.is_scheduled", True)
    amx_shape = _amx_tile_shape(sch, conv, target)
    if amx_shape is not None:
        from tvm_intsmooth.schedule.intrinsics import high_intrin_for
        from tvm_intsmooth.schedule.intrinsics.tensorize_amx import (
            tensorize_amx_conv,
            with_tile_config,
        )

        high = high_intrin_for(target)
        epilogue, pad = _epilogue(sch, high is not None), _find_block(sch, "data_pad")
        tensorize_amx_conv(sch, conv, amx_shape, epilogue, pad, high)
        rows, _, kw, _, _ = amx_shape
        return with_tile_config(sch.mod["main"], rows, kw).with_attr("tirx.is_scheduled", True)
    if tensorize_conv(sch, conv, target):
        return sch.mod["main"].with_attr("tirx.is_scheduled", True)
    _fuse_epilogue(sch, conv)
    _generic_conv(sch, conv)
    pad = _find_block(sch, "data_pad")
    if pad is not None:
        sch.parallel(sch.get_loops(pad)[0])
    return sch.mod["main"].with_attr("tirx.is_scheduled", True)


def _amx_tile_shape(sch: s_tir.Schedule, conv, target) -> tuple | None:
    """The conv's AMX tile (:func:`~.tensorize_amx.amx_tile_shape`) where the target has AMX
    and the data is uint8 (``tdpbusd`` is exact for every uint8 x int8 operand), else None."""
    from tvm_intsmooth.schedule.intrinsics import amx
    from tvm_intsmooth.schedule.intrinsics.tensorize_amx import amx_tile_shape

    if not amx.target_has_amx(target) or _conv_data_dtype(sch, conv) != "uint8":
        return None
    return amx_tile_shape(sch, conv)


def _exact_intrin(sch: s_tir.Schedule, conv, target):
    """The target's intrinsic for the conv block when it is exact for its data, else None."""
    intrin = _intrin_for(target, _conv_data_dtype(sch, conv))
    reduce = int(sch.get(conv).iter_vars[-1].dom.extent)
    data_max = int(sch.get(conv).annotations.get(DATA_MAX_ATTR, 2**31))
    exact = intrin is not None and (intrin.max_data is None or data_max <= intrin.max_data)
    return intrin if exact and intrin.reduce == reduce else None


def tensorize_conv(sch: s_tir.Schedule, conv, target, ow_block=None, oc_block=None) -> bool:
    """Give the conv block and its epilogue the register-blocked tensorized schedule
    (``ow_block`` x ``oc_block`` tile: default :func:`~.tensorize.tile_shape`'s); False where the
    target has no intrinsic exact for it (nothing is changed then)."""
    intrin = _exact_intrin(sch, conv, target)
    if intrin is None:
        return False
    from tvm_intsmooth.schedule.intrinsics import high_intrin_for, tensorize_blocked_conv

    high = high_intrin_for(target)
    epilogue, pad = _epilogue(sch, high is not None), _find_block(sch, "data_pad")
    tensorize_blocked_conv(
        sch, conv, intrin, epilogue=epilogue, pad=pad, high=high, ow_block=ow_block,
        oc_block=oc_block,
    )  # fmt: skip
    return True


def tile_designs(sch: s_tir.Schedule, target: tvm.target.Target) -> list[s_tir.Schedule]:
    """Copies of ``sch`` (a fused PrimFunc's schedule), each with the tensorized schedule of its
    conv for another register tile: the default one and every (columns, output blocks) that
    fits the intrinsic's register budget; ``[sch]`` where it has no such conv. Tuning searches
    among them (``pipeline.tune``), timing each."""
    conv = _find_block(sch, CONV_BLOCK_NAME)
    intrin = _exact_intrin(sch, conv, target) if conv is not None else None
    if intrin is None:
        return [sch]
    from tvm_intsmooth.schedule.intrinsics.tensorize import tile_candidates

    extents = [iv.dom.extent for iv in sch.get(conv).iter_vars]
    width = int(extents[3]) if isinstance(extents[3], tvm.tirx.IntImm) else 1
    fits = tile_candidates(width, int(extents[1]), intrin.accumulators)
    tiles: list[tuple[int | None, int | None]] = [(None, None)]
    tiles += sorted(((c, b) for c, b in fits if c * b > 2), key=lambda tile: tile[1])
    designs: dict[int, s_tir.Schedule] = {}  # by structure: the default tile is one of them
    for ow_block, oc_block in tiles:
        design = sch.copy()
        if tensorize_conv(design, _find_block(design, CONV_BLOCK_NAME), target, ow_block, oc_block):
            designs.setdefault(tvm_ffi.structural_hash(design.mod), design)
    return list(designs.values())


@tvm.transform.module_pass(opt_level=0, name="ScheduleBlockedKernels")
class ScheduleBlockedKernels:
    """Apply :func:`schedule_blocked_conv` to every PrimFunc of the module."""

    def __init__(self, target: tvm.target.Target):
        self.target = target

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        out = tvm.IRModule({gv: f for gv, f in mod.functions_items()}, attrs=mod.attrs)
        for gv, func in mod.functions_items():
            if isinstance(func, tirx.PrimFunc):
                out[gv] = schedule_blocked_conv(func, self.target)
        return out
