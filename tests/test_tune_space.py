"""The tuning search space offers an intrinsic to a kernel only where it is exact for its data.

AVX2's vpmaddubsw and ARM's sdot/smull on uint8 data are exact only for data <= 127 (tests/
test_intrinsics.py shows the saturation above). MetaSchedule tensorizes every conv the
intrinsic's shape fits, so the space of each task must hold such an intrinsic only where the
task's conv reads data within that bound: the conv after a ReLU (0..127), not a conv of a
signed input shifted to 0..255. Building the space needs no CPU with the target's instructions.
"""

from __future__ import annotations

import pytest
import tvm
import tvm_ffi
from conftest import random_images
from onnx_models import signed_input_model
from tvm.s_tir import meta_schedule as ms

from tvm_intsmooth.pipeline.phases import fused_module
from tvm_intsmooth.pipeline.smooth import smooth
from tvm_intsmooth.pipeline.tune import _intrinsic_names, conv_data_max, tunable_tasks
from tvm_intsmooth.schedule.blocked_kernels import CONV_BLOCK_NAME
from tvm_intsmooth.schedule.intrinsics import tensor_intrin_for
from tvm_intsmooth.schedule.targets import resolve_target


@pytest.fixture(scope="module")
def smoothed():
    return smooth(signed_input_model(), random_images((3, 9, 9), 16, seed=3), 0.5, batch=4)


@pytest.mark.parametrize("target", ["x86-avx2", "rpi5", "rpi4", "x86-vnni"])
def test_small_data_intrinsic_only_for_convs_after_a_relu(smoothed, target):
    spec = resolve_target(target)
    uint8 = tensor_intrin_for(spec, "uint8")
    bounds = {}
    for task, _ in tunable_tasks(fused_module(smoothed.mod, spec), spec):
        bound = conv_data_max(task.dispatched[0]["main"])
        bounds[task.task_name] = bound
        offered = uint8.name in _intrinsic_names(spec, bound)
        exact = uint8.max_data is None or (bound is not None and bound <= uint8.max_data)
        assert offered == exact, (task.task_name, bound)
    # The model has one conv after a ReLU (0..127) and two of signed inputs (shifted: 0..255).
    assert sorted(b for b in bounds.values() if b is not None and b <= 255) == [127, 255, 255]
    if target in ("x86-avx2", "rpi5", "rpi4"):
        assert uint8.max_data == 127  # the small-data kind this test is about


@pytest.mark.parametrize("target", ["x86-vnni"])  # the ARM and AVX2 tiles: one fits 5 columns
def test_space_holds_every_register_tile_of_the_fixed_schedule(smoothed, target):
    """Each conv task's space holds the fixed register-blocked schedule for every register tile
    that fits (timed beside the designs TVM's rules generate), each a distinct, tensorized
    schedule in which no parallel iteration loops over the batch."""
    from test_schedule_blocked_kernels import _whole_batch_loops_in_parallel
    from tvm.s_tir import Schedule

    from tvm_intsmooth.pipeline.tune import space_generator
    from tvm_intsmooth.transform.schedule_blocked_kernels import tile_designs

    spec = resolve_target(target)
    checked = 0
    for task, _ in tunable_tasks(fused_module(smoothed.mod, spec), spec):
        mod = tvm.IRModule({"main": task.dispatched[0]["main"]})
        designs = tile_designs(Schedule(mod), spec.tvm_target)
        if len(designs) == 1:  # no conv the intrinsic is exact for: the design is the input
            continue
        checked += 1
        funcs = [d.mod["main"] for d in designs]
        assert len({tvm_ffi.structural_hash(f) for f in funcs}) == len(designs)
        for func in funcs:
            assert f'sblock("{CONV_BLOCK_NAME}_update_o")' in func.script()  # tensorized
            assert _whole_batch_loops_in_parallel(func) == []
        context = ms.TuneContext(mod, target=spec.tvm_target, space_generator=space_generator(spec))
        space = {tvm_ffi.structural_hash(s.mod["main"]) for s in context.generate_design_space()}
        assert {tvm_ffi.structural_hash(f) for f in funcs} <= space
    assert checked
