"""The fixed, untuned schedule of a blocked int8 convolution, tensorized with a target's intrinsic.

The block is ``topi.nn.conv2d_NCHWc_int8``'s compute (or one with the same iteration space):
spatial ``n, oc_chunk, oh, ow, oc_block`` then reduction ``kh, kw, ic_outer, ic_f_inner,
ic_s_inner``, data ``[B, C/cb, H, W, cb]`` and weights ``[K/16, C/cb, KH, KW, cb/R, 16, R]``
where ``R`` is the intrinsic's reduction width (``n_elems``) and ``oc_block`` is 16.
"""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir import TensorIntrin

from tvm_intsmooth.compat import SCRATCH_SCOPE
from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.schedule.intrinsics import x86
from tvm_intsmooth.schedule.intrinsics.lookup import KernelIntrin
from tvm_intsmooth.schedule.intrinsics.x86 import scoped_name
from tvm_intsmooth.schedule.requantize import HIGH_BLOCK

__all__ = ["tensorize_blocked_conv", "tile_candidates", "tile_shape"]

_SPATIAL, _REDUCE = 0, 2  # IterVar kinds as s_tir reports them (data-parallel, comm-reduce)


def static_extent(extent) -> int | None:
    """A loop or iterator extent as an int, None where it is symbolic."""
    return int(extent) if isinstance(extent, (int, tirx.IntImm)) else None


MAX_COLUMNS = 16


def tile_candidates(
    width: int | None, oc_chunks: int | None, budget: int = 16
) -> list[tuple[int, int]]:
    """Every register tile of a blocked conv that fits: (output columns, 16-channel output
    blocks), blocks 4, 2, 1 dividing ``oc_chunks``, columns dividing the width (a symbolic
    width: 1), at most :data:`MAX_COLUMNS` of them and ``budget`` accumulators in all (the
    intrinsic's :attr:`~.lookup.KernelIntrin.accumulators`); by blocks, then columns."""
    width = width or 1
    tiles = []
    for blocks in (4, 2, 1):
        if oc_chunks is None or oc_chunks % blocks or blocks > budget:
            continue
        limit = min(MAX_COLUMNS, budget // blocks, width)
        tiles += [(columns, blocks) for columns in range(1, limit + 1) if width % columns == 0]
    return tiles


def tile_shape(width: int | None, oc_chunks: int | None, budget: int = 16) -> tuple[int, int]:
    """The register tile of a blocked conv: (output columns, 16-channel output blocks).

    Each reduction step loads one weight vector per output block and broadcasts one data word
    per column, then issues columns x blocks dot products: loads per dot product
    ``(columns + blocks) / (columns * blocks)``, so the tile is the :func:`tile_candidates`
    one with the most accumulators, the squarest of those (the first where they tie)."""

    def score(tile: tuple[int, int]) -> tuple[int, float]:
        columns, blocks = tile
        return columns * blocks, -(columns + blocks) / (columns * blocks)

    return max(tile_candidates(width, oc_chunks, budget), key=score, default=(1, 1))


def tensorize_blocked_conv(
    sch: s_tir.Schedule,
    block: s_tir.schedule.SBlockRV | str,
    intrin: KernelIntrin,
    *,
    ow_block: int | None = None,
    oc_block: int | None = None,
    epilogue: s_tir.schedule.SBlockRV | list | None = None,
    pad: s_tir.schedule.SBlockRV | None = None,
    parallel: bool = True,
    high: str | None = None,
) -> None:
    """Schedule one blocked int8 conv block so that its inner loops are ``intrin``'s instruction.

    The schedule, a register-blocked micro-kernel: loops ``n, oc_chunk / oc_block, oh`` fused
    and (optionally) parallel; then ``ow`` split by ``ow_block`` (its outer part outside the
    reduction), the reduction ``kh, kw, ic_outer, ic_f_inner``, then the register tile,
    unrolled: ``oc_block`` output blocks x ``ow_block`` columns, each the 16 output lanes x
    ``R`` reduction as ``16 / intrin.lanes`` calls of the intrinsic. Per reduction step the tile
    loads ``oc_block`` weight vectors and ``ow_block`` data words, each used ``ow_block`` /
    ``oc_block`` times, and keeps ``oc_block x ow_block`` accumulators (by default the largest
    tile of :func:`tile_shape`). The accumulator initialisation is split off
    (decompose_reduction).

    ``epilogue``: the block that consumes the conv (its elementwise epilogue: requantize, ReLU,
    residual add, inlined into one), computed per register tile right after its reduction,
    from the accumulators (held in a scratch buffer, which LLVM keeps in registers); ``pad``: the
    conv's padding block, computed per sample into a "local" buffer (that sample's padded
    image, allocated once per sample) instead of a padded copy of the whole input. Without
    them, an epilogue already placed under the ``oh`` loop (``reverse_compute_at`` on
    ``sch.get_loops(block)[2]`` before this call) is kept there, and the tile is then one
    output block deep.

    Exactness is the caller's part: the data must respect ``intrin.max_data`` (127 for AVX2 and
    for ARM with uint8 data).

    Call it on a fresh schedule of the PrimFunc that holds the conv::

        from tvm_intsmooth.schedule.intrinsics import tensor_intrin_for, tensorize_blocked_conv
        intrin = tensor_intrin_for(target, data_dtype="uint8")   # None: no int8 intrinsic
        sch = tvm.s_tir.Schedule(prim_func)
        tensorize_blocked_conv(sch, "conv2d_NCHWc_int8", intrin)
        mod = sch.mod

    Args:
        sch: the schedule, modified in place.
        block: the conv block (its name or a block RV).
        intrin: from :func:`tensor_intrin_for`; its ``reduce`` must equal the block's innermost
            reduction extent and 16 must be a multiple of its ``lanes``.
        ow_block: output columns per tile; a divisor of the output width is used (the largest
            one not above it). Default: from :func:`tile_shape`.
        oc_block: 16-channel output blocks per tile (a divisor of their count). Default: from
            :func:`tile_shape`.
        epilogue: the conv's consumer block to compute per tile (see above), or the blocks
            of its epilogue in order (the last one consumes the others).
        high: the base name of the target's intrinsic for the high products of the int32
            requantization in the epilogue (:func:`~.lookup.high_intrin_for`; None: LLVM's
            lowering).
        pad: the conv's padding block to compute per output row (see above).
        parallel: make the fused outer loop parallel.

    Raises:
        IntSmoothError: the block does not have the blocked conv's iteration space or its
            extents do not fit the intrinsic.
    """
    rv = sch.get_sblock(block) if isinstance(block, str) else block
    loops, extents = _checked_loops(sch, rv, intrin)
    n, occ, oh, ow, ocb, kh, kw, ico, icf, ics = loops
    data_scope = "local" if pad is not None else "global"  # a padded image, allocated per sample
    name = scoped_name(intrin.name, data_scope)
    if TensorIntrin.get(name, allow_missing=True) is None:  # TVM's own: global memory only
        name, pad = intrin.name, None
    if extents[0] and extents[2] == extents[3] == 1 and pad is None and ow_block is None:
        _dense(sch, rv, loops, extents, intrin, name, epilogue, parallel, high)
        return
    columns, blocks = _tile(sch, oh, extents, intrin, ow_block, oc_block)
    ow_o, ow_i = sch.split(ow, [None, columns])
    ocb_o, ocb_i = sch.split(ocb, [None, intrin.lanes])
    # n, oc_chunk, oh stay outermost; an epilogue may already sit under oh (reverse_compute_at)
    # The kernel columns kw are part of the unrolled tile: output column c at kw reads input
    # column c + kw (stride 1), so the tile's broadcasts are shared by up to KW dot products.
    occ_o, occ_i = occ, None
    if blocks > 1:
        occ_o, occ_i = sch.split(occ, [None, blocks])
        sch.reorder(oh, occ_i)
        sch.reorder(ow_o, kh, ico, icf, kw, occ_i, ow_i, ocb_o, ocb_i, ics)
    else:
        sch.reorder(ow_o, kh, ico, icf, kw, ow_i, ocb_o, ocb_i, ics)
    if epilogue is not None:
        schedule_epilogue(sch, epilogue, ow_o, high)
    if pad is not None:  # one padded image per sample, in a local buffer (L1)
        sch.compute_at(pad, n)
        sch.set_scope(pad, 0, data_scope)
        sch.vectorize(sch.get_loops(pad)[-1])
        outer = n
    else:
        outer = sch.fuse(n, occ_o, oh)
    if parallel:
        sch.parallel(outer)
    sch.decompose_reduction(rv, kh)
    for loop in (kw, occ_i, ow_i, ocb_o):
        if loop is not None:
            sch.unroll(loop)
    sch.tensorize(ocb_i, name)


def _dense(sch, rv, loops, extents, intrin, name, epilogue, parallel, high) -> None:
    """A 1 x 1 output (a dense layer as a conv): the tile's columns are samples of the batch,
    so each weight vector serves several samples."""
    n, occ, oh, ow, ocb, kh, kw, ico, icf, ics = loops
    samples, blocks = tile_shape(extents[0], extents[1], intrin.accumulators)
    n_o, n_i = sch.split(n, [None, samples])
    occ_o, occ_i = sch.split(occ, [None, blocks])
    ocb_o, ocb_i = sch.split(ocb, [None, intrin.lanes])
    sch.reorder(n_o, occ_o, oh, ow, kh, kw, ico, icf, occ_i, n_i, ocb_o, ocb_i, ics)
    if epilogue is not None:
        schedule_epilogue(sch, epilogue, ow, high)
    outer = sch.fuse(n_o, occ_o)
    if parallel:
        sch.parallel(outer)
    sch.decompose_reduction(rv, kh)
    for loop in (occ_i, n_i, ocb_o):
        sch.unroll(loop)
    sch.tensorize(ocb_i, name)


def schedule_epilogue(sch: s_tir.Schedule, epilogue, loop, high: str | None) -> None:
    """Compute the epilogue under ``loop`` (per register tile): its blocks in order, all but
    the last into tile-sized scratch buffers (registers), each vectorized over the 16 lanes; a
    high product of the int32 requantization (``requantize_high``) as the ``high`` intrinsic
    where given."""
    blocks = epilogue if isinstance(epilogue, list | tuple) else [epilogue]
    for block in blocks:
        sch.reverse_compute_at(block, loop)
    for block in blocks:
        lanes = sch.get_loops(block)[-1]
        stmt = sch.get(block)
        if high is not None and stmt.name_hint.startswith(HIGH_BLOCK):
            made = [w.source for p in sch.get_producers(block) for w in sch.get(p).writes]
            mult = [r for r in stmt.reads if not any(r.source.same_as(b) for b in made)]
            b_lanes = 16 if mult and int(mult[0].source.shape[-1]) == 16 else 1
            name = x86.high_name(high, b_lanes, SCRATCH_SCOPE, SCRATCH_SCOPE)
            try:
                sch.tensorize(lanes, name)
                continue
            except s_tir.ScheduleError:  # a region that does not fit: LLVM's lowering
                pass
        sch.vectorize(lanes)


def _checked_loops(sch: s_tir.Schedule, rv, intrin: KernelIntrin) -> tuple[list, list]:
    """The conv block's 10 loops and its static extents (None where symbolic), or an
    IntSmoothError where the block is not a blocked conv that ``intrin`` fits."""
    loops = sch.get_loops(rv)
    iters = sch.get(rv).iter_vars
    kinds = [int(iv.iter_type) for iv in iters]
    # the batch may be symbolic; the lanes, the inner reduction (and ow, to be split) are not
    extents = [static_extent(iv.dom.extent) for iv in iters]
    if kinds != [_SPATIAL] * 5 + [_REDUCE] * 5 or len(loops) != 10:
        raise IntSmoothError(
            f"tensorize_blocked_conv: block {sch.get(rv).name_hint!r} is not a blocked conv "
            "(expected 5 spatial axes n, oc_chunk, oh, ow, oc_block and 5 reduction axes kh, kw, "
            "ic_outer, ic_f_inner, ic_s_inner, as topi.nn.conv2d_NCHWc_int8 builds it)."
        )
    oc_lanes, reduce = extents[4], extents[9]
    if reduce != intrin.reduce or oc_lanes is None or oc_lanes % intrin.lanes:
        raise IntSmoothError(
            f"tensorize_blocked_conv: block {sch.get(rv).name_hint!r} has {oc_lanes} output "
            f"lanes x {reduce} inner reduction, but {intrin.name} computes {intrin.lanes} lanes "
            f"x {intrin.reduce}: build the conv with n_elems={intrin.reduce} and a multiple of "
            f"{intrin.lanes} output channels per block."
        )
    dtypes = {len(r.source.shape): str(r.source.dtype) for r in sch.get(rv).reads}
    if (dtypes.get(5), dtypes.get(7)) != (intrin.data_dtype, intrin.weight_dtype):
        raise IntSmoothError(
            f"tensorize_blocked_conv: block {sch.get(rv).name_hint!r} reads {dtypes.get(5)} data "
            f"and {dtypes.get(7)} weights, but {intrin.name} takes {intrin.data_dtype} x "
            f"{intrin.weight_dtype}: ask tensor_intrin_for for the block's data dtype."
        )
    return loops, extents


def _tile(sch, oh, extents, intrin: KernelIntrin, ow_block, oc_block) -> tuple[int, int]:
    """(columns, output blocks) of the register tile: the caller's, else :func:`tile_shape`'s;
    one output block deep where something already sits under the ``oh`` loop."""
    width, oc_chunks = extents[3], extents[1]
    columns, blocks = tile_shape(width, oc_chunks, intrin.accumulators)
    if not isinstance(sch.get(oh).body, tirx.For):  # an epilogue placed before
        blocks = 1
    if ow_block is not None:
        columns = max(d for d in range(1, min(ow_block, width or 1) + 1) if (width or 1) % d == 0)
    if oc_block is not None and oc_chunks and oc_chunks % oc_block == 0:
        blocks = oc_block
    return columns, blocks
