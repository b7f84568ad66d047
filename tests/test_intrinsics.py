"""Tensor intrinsics (tvm_intsmooth.schedule.intrinsics): the lookup per target, the upstream VNNI
breakage that makes ours necessary, and exactness at the extreme values of each operand."""

import numpy as np
import pytest
import tvm
from intrinsics_conv import blocked_conv, host_has, reference, run_blocked_conv

from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.schedule import resolve_target
from tvm_intsmooth.schedule.intrinsics import lookup as L
from tvm_intsmooth.schedule.intrinsics import tensor_intrin_for
from tvm_intsmooth.schedule.intrinsics.tensorize import tensorize_blocked_conv


@pytest.mark.parametrize(
    ("target", "uint8", "int8", "int16"),
    [
        ("x86-vnni", L.VNNI, None, L.VNNI_INT16),
        ("x86-avx2", L.AVX2, None, L.AVX2_INT16),
        ("x86-64", None, None, None),
        ("rpi5", L.SDOT_U8, L.SDOT, None),
        ("rpi4", L.NEON_U8, L.NEON, None),
    ],
)
def test_lookup_per_target(target, uint8, int8, int16):
    assert tensor_intrin_for(target) == uint8
    assert tensor_intrin_for(resolve_target(target).target, "int8") == int8
    assert tensor_intrin_for(target, "int16") == int16
    for intrin in (uint8, int8, int16):
        if intrin is not None:  # registered under that name, and blocks of 16 output lanes
            assert tvm.s_tir.TensorIntrin.get(intrin.name) is not None
            assert intrin.block_lanes % intrin.lanes == 0


def test_lookup_facts():
    assert (L.VNNI.lanes, L.VNNI.reduce, L.VNNI.data_dtype, L.VNNI.asm) == (
        16,
        4,
        "uint8",
        "vpdpbusd",
    )
    assert L.AVX2.max_data == 127 and L.VNNI.max_data is None
    assert (L.SDOT.lanes, L.SDOT.reduce, L.SDOT.data_dtype) == (4, 4, "int8")
    assert L.SDOT.max_data is None and L.SDOT_U8.max_data == L.NEON_U8.max_data == 127
    assert L.AVX2_INT16.reduce == 2 and L.AVX2_INT16.data_dtype == "int16"
    with pytest.raises(IntSmoothError, match="float32"):
        tensor_intrin_for("x86-vnni", "float32")


def _exact_at_extremes(target: str, x_values, w_values, data_dtype="uint8"):
    intrin = tensor_intrin_for(target, data_dtype)
    lib = tvm.compile(blocked_conv(intrin, n=1, hw=4), target=resolve_target(target).target)
    results = []
    for xv, wv in zip(x_values, w_values, strict=True):
        x = np.full((1, 16, 4, 4), xv, dtype=np.int64)
        w = np.full((16, 16, 3, 3), wv, dtype=np.int64)
        results.append((run_blocked_conv(lib, intrin, x, w), reference(x, w)))
    return results


def test_vnni_exact_at_extremes():
    if not host_has("avx512vnni"):
        pytest.skip("this CPU has no AVX-512 VNNI: the vpdpbusd kernel cannot run here")
    for got, want in _exact_at_extremes("x86-vnni", [255, 255, 127], [-128, 127, -128]):
        np.testing.assert_array_equal(got, want)
    assert want.min() == 127 * -128 * 16 * 9  # the centre pixel sees the full 3x3x16 fan-in


def test_avx2_exact_up_to_127_and_saturates_above():
    """vpmaddubsw sums two u8 x s8 products into int16 with saturation: exact for data <= 127
    (2 * 127 * -128 = -32,512), wrong for 255 (2 * 255 * -128 = -65,280 clamps to -32,768)."""
    if not host_has("avx2"):
        pytest.skip("this CPU has no AVX2: the vpmaddubsw kernel cannot run here")
    (ok, ok_ref), (ok2, ok2_ref), (bad, bad_ref) = _exact_at_extremes(
        "x86-avx2", [127, 127, 255], [-128, 127, -128]
    )
    np.testing.assert_array_equal(ok, ok_ref)
    np.testing.assert_array_equal(ok2, ok2_ref)
    assert ok.min() == 127 * -128 * 16 * 9
    # 255 x -128: every pair saturates to -32768; 8 pairs per 16 channels, 9 taps at the centre
    assert not np.array_equal(bad, bad_ref)
    assert bad[0, 0, 1, 1] == -32768 * 8 * 9 != bad_ref[0, 0, 1, 1]


@pytest.mark.parametrize(("target", "feature"), [("x86-vnni", "avx512bw"), ("x86-avx2", "avx2")])
def test_int16_pair_sum_exact_at_extremes(target, feature):
    if not host_has(feature):
        pytest.skip(f"this CPU has no {feature}: the int16 vpmaddwd kernel cannot run here")
    cases = _exact_at_extremes(target, [-32768, -32768, 32767], [-128, 127, -128], "int16")
    for got, want in cases:
        np.testing.assert_array_equal(got, want)
    assert cases[0][1].max() == 32768 * 128 * 16 * 9


def test_tensorize_rejects_a_block_that_does_not_fit():
    with pytest.raises(IntSmoothError, match="n_elems=2"):
        blocked_conv(L.VNNI, n=1, hw=4, tensorize_with=L.AVX2_INT16)
    with pytest.raises(IntSmoothError, match="takes int8 x int8"):
        blocked_conv(L.VNNI, n=1, hw=4, tensorize_with=L.SDOT)
    sch = tvm.s_tir.Schedule(blocked_conv(L.VNNI, n=1, hw=4))
    with pytest.raises(IntSmoothError, match="not a blocked conv"):
        tensorize_blocked_conv(sch, "data_pad", L.VNNI)


def test_tensorize_with_a_symbolic_batch():
    """The batch of a smoothed classifier's conv may be symbolic: still one vpdpbusd kernel."""
    mod = blocked_conv(L.VNNI, n=tvm.te.var("n"), hw=4)
    asm = tvm.compile(mod, target=resolve_target("x86-vnni").target).mod.inspect_source("asm")
    assert "vpdpbusd" in asm
