"""The fixed, untuned schedule of a blocked int8 convolution, tensorized with a target's intrinsic.

The block is ``topi.nn.conv2d_NCHWc_int8``'s compute (or one with the same iteration space):
spatial ``n, oc_chunk, oh, ow, oc_block`` then reduction ``kh, kw, ic_outer, ic_f_inner,
ic_s_inner``, data ``[B, C/cb, H, W, cb]`` and weights ``[K/16, C/cb, KH, KW, cb/R, 16, R]``
where ``R`` is the intrinsic's reduction width (``n_elems``) and ``oc_block`` is 16.
"""

from __future__ import annotations

from tvm import s_tir, tirx

from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.schedule.intrinsics.lookup import KernelIntrin

__all__ = ["tensorize_blocked_conv"]

_SPATIAL, _REDUCE = 0, 2  # IterVar kinds as s_tir reports them (data-parallel, comm-reduce)


def _static(extent) -> int | None:
    return int(extent) if isinstance(extent, (int, tirx.IntImm)) else None


def tensorize_blocked_conv(
    sch: s_tir.Schedule,
    block: s_tir.schedule.SBlockRV | str,
    intrin: KernelIntrin,
    *,
    ow_block: int = 4,
    parallel: bool = True,
) -> None:
    """Schedule one blocked int8 conv block so that its inner loops are ``intrin``'s instruction.

    The schedule: loops ``n, oc_chunk, oh`` fused and (optionally) parallel; then ``ow`` split by
    ``ow_block`` (its outer part outside the reduction), the reduction ``kh, kw, ic_outer,
    ic_f_inner``, the ``ow_block`` inner outputs unrolled (``ow_block`` independent accumulator
    rows that share each weight load), and the 16 output lanes x ``R`` reduction as
    ``16 / intrin.lanes`` calls of the intrinsic. The accumulator initialisation is split off
    (decompose_reduction), so epilogue blocks that follow (requantize, ReLU, add) are untouched:
    schedule them separately, before or after this call (e.g. ``reverse_compute_at`` under the
    ``oh`` loop, ``sch.get_loops(block)[2]``, before calling it: the loops below ``oh`` are the
    only ones it reorders).

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
        ow_block: output columns computed together (register blocking); a divisor of the output
            width is used (the largest one not above it).
        parallel: make the fused outer loop parallel.

    Raises:
        IntSmoothError: the block does not have the blocked conv's iteration space or its
            extents do not fit the intrinsic.
    """
    rv = sch.get_sblock(block) if isinstance(block, str) else block
    loops = sch.get_loops(rv)
    iters = sch.get(rv).iter_vars
    kinds = [int(iv.iter_type) for iv in iters]
    # the batch may be symbolic; the lanes, the inner reduction (and ow, to be split) are not
    extents = [_static(iv.dom.extent) for iv in iters]
    if kinds != [_SPATIAL] * 5 + [_REDUCE] * 5 or len(loops) != 10:
        raise IntSmoothError(
            f"tensorize_blocked_conv: block {sch.get(rv).name_hint!r} is not a blocked conv "
            "(expected 5 spatial axes n, oc_chunk, oh, ow, oc_block and 5 reduction axes kh, kw, "
            "ic_outer, ic_f_inner, ic_s_inner, as topi.nn.conv2d_NCHWc_int8 builds it)."
        )
    oc_block, reduce = extents[4], extents[9]
    if reduce != intrin.reduce or oc_block is None or oc_block % intrin.lanes:
        raise IntSmoothError(
            f"tensorize_blocked_conv: block {sch.get(rv).name_hint!r} has {oc_block} output lanes "
            f"x {reduce} inner reduction, but {intrin.name} computes {intrin.lanes} lanes x "
            f"{intrin.reduce}: build the conv with n_elems={intrin.reduce} and a multiple of "
            f"{intrin.lanes} output channels per block."
        )
    dtypes = {len(r.source.shape): str(r.source.dtype) for r in sch.get(rv).reads}
    if (dtypes.get(5), dtypes.get(7)) != (intrin.data_dtype, intrin.weight_dtype):
        raise IntSmoothError(
            f"tensorize_blocked_conv: block {sch.get(rv).name_hint!r} reads {dtypes.get(5)} data "
            f"and {dtypes.get(7)} weights, but {intrin.name} takes {intrin.data_dtype} x "
            f"{intrin.weight_dtype}: ask tensor_intrin_for for the block's data dtype."
        )
    n, occ, oh, ow, ocb, kh, kw, ico, icf, ics = loops
    width = extents[3] or 1  # a symbolic width: no register blocking
    step = max(d for d in range(1, min(ow_block, width) + 1) if width % d == 0)
    ow_o, ow_i = sch.split(ow, [None, step])
    ocb_o, ocb_i = sch.split(ocb, [None, intrin.lanes])
    # n, oc_chunk, oh stay outermost; an epilogue may already sit under oh (reverse_compute_at)
    sch.reorder(ow_o, kh, kw, ico, icf, ow_i, ocb_o, ocb_i, ics)
    outer = sch.fuse(n, occ, oh)
    if parallel:
        sch.parallel(outer)
    sch.decompose_reduction(rv, kh)
    sch.unroll(ow_i)
    sch.unroll(ocb_o)
    sch.tensorize(ocb_i, intrin.name)
