"""ScheduleBlockedKernels: every parallel iteration computes its own tile and nothing more.

Built for each CPU target here (no kernel runs, so it holds on every CPU): a block under the
parallel loop whose loops span the symbolic batch recomputes other iterations' values into
buffers the iterations share, a race (on AVX-512 the Sub of a conv and another input gave
wrong logits that way, while AVX2, whose schedule differs, gave the right ones)."""

from __future__ import annotations

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
