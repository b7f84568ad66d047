"""The fixed schedule of a blocked int8 conv on Intel AMX (:mod:`.amx`): one tile intrinsic per
``rows`` output pixels x 16 output channels, the epilogue per tile.

Loops: ``n`` (parallel, the sample's padded image computed into a local buffer once), then
``oc_chunk, oh, ow / rows``, each iteration one tile: its accumulators zeroed, the whole
reduction in tile registers (:func:`.amx.conv_tile_intrin`), then the epilogue (requantization,
clamps, residual sum) over the tile's 16-lane vectors, as in the vector schedule
(:func:`.tensorize.tensorize_blocked_conv`). Each iteration of the parallel loop starts by
loading the tile configuration (:func:`.amx.config_block`).
"""

from __future__ import annotations

import tvm
import tvm.sym as arith
from tvm import s_tir, tirx

from tvm_intsmooth.schedule.intrinsics import amx
from tvm_intsmooth.schedule.intrinsics.tensorize import schedule_epilogue, static_extent
from tvm_intsmooth.schedule.root_block import with_parallel_bodies


def _data_steps(sch: s_tir.Schedule, conv) -> tuple[int, int] | None:
    """(stride, dilation) along the conv's width: the data index of the width axis at output
    column 1, tap 0 and at column 0, tap 1; None where the index is not of that form."""
    block = sch.get(conv)
    data = [r for r in block.reads if len(r.source.ty.shape) == 5 and r.source.dtype == "uint8"]
    if len(data) != 1:
        return None
    index = data[0].region[3].min
    z, kw = block.iter_vars[3].var, block.iter_vars[6].var
    others = [iv.var for i, iv in enumerate(block.iter_vars) if i not in (3, 6)]
    steps = []
    for at_z, at_kw in ((1, 0), (0, 1)):
        ana = arith.Analyzer()
        ana.bind(z, tvm.ir.Range(at_z, at_z + 1))
        ana.bind(kw, tvm.ir.Range(at_kw, at_kw + 1))
        for var in others:
            ana.bind(var, tvm.ir.Range(0, 1))
        value = ana.simplify(index)
        if not isinstance(value, tirx.IntImm):
            return None
        steps.append(int(value))
    return steps[0], steps[1]


def amx_tile_shape(sch: s_tir.Schedule, conv) -> tuple[int, int, int, int, int] | None:
    """``(rows, kh, kw, input blocks, stride)`` of the conv's AMX tile, or None where the conv
    has none (:func:`.amx.fits`; dilation other than 1; symbolic extents)."""
    extents = [static_extent(iv.dom.extent) for iv in sch.get(conv).iter_vars]
    if len(extents) != 10 or None in extents[1:]:
        return None
    _, _, _, width, lanes, kh, kw, cb, _, inner = extents
    steps = _data_steps(sch, conv)
    if steps is None or steps[1] != 1 or not amx.fits(width, kw, inner, lanes):
        return None
    return amx.tile_rows(width), kh, kw, cb, steps[0]


def tensorize_amx_conv(
    sch: s_tir.Schedule, conv, shape: tuple, epilogue=None, pad=None, high=None
) -> None:
    """Give the conv block (``conv2d_NCHWc_int8``, uint8 data) the AMX schedule of its tile
    ``shape`` (:func:`amx_tile_shape`). ``epilogue``, ``pad`` and ``high`` as for
    :func:`.tensorize.tensorize_blocked_conv`."""
    rows, kh, kw, cb, stride = shape
    n, occ, oh, ow, ocb, ry, rx, rc, rg, ri = sch.get_loops(conv)
    ow_o, ow_i = sch.split(ow, [None, rows])
    sch.reorder(ow_o, ow_i, ocb, ry, rx, rc, rg, ri)
    if epilogue is not None:
        schedule_epilogue(sch, epilogue, ow_o, high)
    data_scope = "global"
    if pad is not None:  # one padded image per sample, in a local buffer
        sch.compute_at(pad, n)
        sch.set_scope(pad, 0, "local")
        sch.vectorize(sch.get_loops(pad)[-1])
        data_scope = "local"
    sch.parallel(n)
    sch.decompose_reduction(conv, ow_i)
    sch.tensorize(ow_i, amx.conv_tile_intrin(rows, kh, kw, cb, stride, data_scope))


def with_tile_config(func: tirx.PrimFunc, rows: int, kw: int) -> tirx.PrimFunc:
    """``func`` (scheduled: top-level loops in its root block) with :func:`.amx.config_block`
    first in the body of each top-level parallel loop."""
    return with_parallel_bodies(func, lambda body: tirx.SeqStmt([amx.config_block(rows, kw), body]))
