"""ScheduleBlockedKernels: every parallel iteration computes its own tile and nothing more.

Built for each CPU target here (no kernel runs, so it holds on every CPU): a block under the
parallel loop whose loops span the symbolic batch recomputes other iterations' values into
buffers the iterations share, a race (on AVX-512 the Sub of a conv and another input gave
wrong logits that way, while AVX2, whose schedule differs, gave the right ones)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tvm
from layer_models import LAYER_MODELS, SHAPE
from onnx_models import residual_model
from tvm import tirx

import tvm_intsmooth as tis
from tvm_intsmooth.pipeline.phases import fused_module
from tvm_intsmooth.schedule import resolve_target
from tvm_intsmooth.schedule.requantize import HIGH_BLOCK
from tvm_intsmooth.transform import ScheduleBlockedKernels

MODELS = {
    "subtract": (lambda: LAYER_MODELS["subtract"](seed=1), SHAPE),
    "concat": (lambda: LAYER_MODELS["concat"](seed=1), SHAPE),
    "residual": (residual_model, (3, 10, 10)),  # the Add of a conv and its shortcut
}


def _scheduled(name: str, target: str) -> tvm.IRModule:
    make, shape = MODELS[name]
    images = np.random.default_rng(0).integers(0, 256, (64, *shape), dtype=np.uint8)
    quantized = tis.quantize_static(make(), images)
    tgt = resolve_target(target).tvm_target
    with tgt:
        return ScheduleBlockedKernels(tgt)(fused_module(quantized.mod, target))


def _whole_batch_loops_in_parallel(func: tirx.PrimFunc) -> list[str]:
    """Names of the blocks under a parallel loop that also sit in a loop, inside it, whose
    extent depends on the batch."""
    sch = tvm.s_tir.Schedule(tvm.IRModule({"main": func}))
    found = []
    for block in _blocks(sch, sch.get_sblock("root")):
        loops = [sch.get(rv) for rv in sch.get_loops(block)]
        kinds = [loop.kind == tirx.ForKind.PARALLEL for loop in loops]
        if True not in kinds:
            continue
        inner = loops[kinds.index(True) + 1 :]
        if any(_uses_batch(loop.extent) for loop in inner):
            found.append(sch.get(block).name_hint)
    return found


def _blocks(sch, parent) -> list:
    children = list(sch.get_child_blocks(parent))
    return children + [b for c in children for b in _blocks(sch, c)]


def _uses_batch(expr) -> bool:
    return any(v.name == "batch" for v in tirx.analysis.undefined_vars(expr, []))


@pytest.mark.parametrize("target", ["x86-vnni", "x86-avx2", "rpi5"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_no_parallel_iteration_recomputes_the_batch(name, target):
    mod = _scheduled(name, target)
    convs = {g.name_hint: f for g, f in mod.functions.items() if "conv_blocked" in g.name_hint}
    assert convs
    for gv, func in convs.items():
        assert _whole_batch_loops_in_parallel(func) == [], gv
    if target == "x86-vnni" and name == "subtract":  # the case that raced: kept high products
        script = "".join(f.script() for f in convs.values())
        assert f'sblock("{HIGH_BLOCK}_o")' in script


def test_every_register_tile_computes_the_exact_conv():
    """Every tile that tuning's space offers (tile_designs) gives the numpy interpreter's conv
    to the bit, run on this CPU's x86 intrinsic (vpdpbusd, or vpmaddubsw at data <= 127)."""
    from intrinsics_conv import reference, run_blocked_conv
    from tvm import te, topi
    from tvm.s_tir import Schedule

    from tvm_intsmooth.schedule.blocked_kernels import CONV_BLOCK_NAME, DATA_MAX_ATTR
    from tvm_intsmooth.schedule.intrinsics import tensor_intrin_for
    from tvm_intsmooth.schedule.targets import host_can_run
    from tvm_intsmooth.transform.schedule_blocked_kernels import tile_designs

    target = next((t for t in ("x86-vnni", "x86-avx2") if host_can_run(t)), None)
    if target is None:
        pytest.skip("runs the x86 int8 intrinsics: this CPU has neither AVX-512 VNNI nor AVX2")
    intrin = tensor_intrin_for(target, "uint8")
    r, top = intrin.reduce, intrin.max_data or 255
    data = te.placeholder((2, 2, 12, 12, 16), "uint8", name="data")
    kernel = te.placeholder((4, 2, 3, 3, 16 // r, 16, r), "int8", name="kernel")
    out = topi.nn.conv2d_NCHWc_int8(data, kernel, 1, 1, 1, "NCHW16c", "NCHW16c", "int32", r)
    sch = Schedule(te.create_prim_func([data, kernel, out]))
    sch.annotate(sch.get_sblock(CONV_BLOCK_NAME), DATA_MAX_ATTR, top)
    tvm_target = resolve_target(target).tvm_target
    designs = tile_designs(sch, tvm_target)
    assert len(designs) >= 4, len(designs)  # 12 columns x 4 output blocks: several tiles fit
    rng = np.random.default_rng(7)
    x = rng.integers(0, top + 1, (2, 32, 12, 12))
    x[0, :, 0, :] = top  # the extremes, where a saturating or overflowing form would show
    w = rng.integers(-128, 128, (64, 32, 3, 3))
    w[:16] = -128
    want = reference(x, w)
    for design in designs:
        got = run_blocked_conv(tvm.compile(design.mod, target=tvm_target), intrin, x, w)
        np.testing.assert_array_equal(got, want)


WORKSPACE_CALL = r"(\w+) = T\.decl_buffer.*TVMBackendAllocWorkspace\(1, dev_id, T\.uint64\((\d+)\)"


@pytest.mark.parametrize("target", ["x86-vnni", "x86-avx2", "rpi5"])
def test_no_kernel_allocates_small_scratch_from_the_workspace(target):
    """Lowered for each CPU target (no kernel runs): the register tiles, epilogue stages and the
    noise sampler's state live on the stack. TVMBackendAllocWorkspace is left to a sample's
    padded image and to buffers of at least 1 KiB (a 16-accumulator tile), allocated once per
    sample; a smaller one is a "local" scratch buffer, a call pair per row (SCRATCH_SCOPE)."""
    from tvm_intsmooth.pipeline.build import lower

    make, shape = MODELS["residual"]
    images = np.random.default_rng(0).integers(0, 256, (32, *shape), dtype=np.uint8)
    lowered = lower(tis.smooth(make(), images, 0.25, batch=4).mod, target, schedules=None)
    sizes = {}
    for gv, func in lowered.functions.items():
        if isinstance(func, tirx.PrimFunc):
            found = re.findall(WORKSPACE_CALL, func.script())
            sizes[gv.name_hint] = [int(n) for name, n in found if not name.startswith("data_pad")]
    # the convs are kernels of their own or inside a per-sample kernel (FuseSampleLoops)
    convs = [name for name in sizes if "conv" in name or name.startswith("per_sample")]
    assert any("noise" in name for name in sizes) and convs
    small = {name: [n for n in found if n < 1024] for name, found in sizes.items()}
    assert {name: found for name, found in small.items() if found} == {}
