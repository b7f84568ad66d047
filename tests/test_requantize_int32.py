"""RequantizeInt32: the int32 forms of the fixed-point requantization give the int64 chain's
values to the bit, for every input its dtype can hold (the extremes included)."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import te

from tvm_intsmooth.quantize.fixed_point import quantize_multiplier
from tvm_intsmooth.schedule.database import register_intrinsics
from tvm_intsmooth.schedule.requantize import (
    int32_constants,
    requantize_int32,
    requantize_int32_split,
    requantized_sum,
    shift_constants,
    split_constants,
)

INFO = {
    "int8": (-128, 127),
    "uint8": (0, 255),
    "int16": (-32768, 32767),
    "int32": (-(2**31), 2**31 - 1),
}


def _reference(x, m, r, s, clip):
    """The graph's int64 chain (Python ints: no overflow anywhere)."""
    y = (x.astype(object) * m.astype(object) + r.astype(object)) >> s.astype(object)
    if clip is not None:
        y = np.minimum(np.maximum(y, clip[0]), clip[1])
    return y.astype(np.int64)


def _inputs(dtype: str, rng, n: int = 4000) -> np.ndarray:
    lo, hi = INFO[dtype]
    edges = np.array([lo, lo + 1, -1, 0, 1, hi - 1, hi], dtype=np.int64)
    edges = edges[(edges >= lo) & (edges <= hi)]
    return np.concatenate([edges, rng.integers(lo, hi, n, endpoint=True)]).astype(dtype)


def _constants(rng, reals: np.ndarray):
    mult, shift = quantize_multiplier(reals)
    return mult, np.int64(1) << (shift - 1), shift


def _run(compute, x: np.ndarray, consts: dict, clip, out_dtype: str) -> np.ndarray:
    channels = next(iter(consts.values())).size
    xt = te.placeholder((x.size // channels, channels), str(x.dtype), name="x")
    ct = [te.placeholder((channels,), "int32", name=k) for k in consts]
    out = compute(xt, *ct, clip, out_dtype)
    lib = tvm.compile(te.create_prim_func([xt, *ct, out]), target="llvm")
    result = tvm.runtime.tensor(np.zeros([int(d) for d in out.shape], out_dtype))
    args = [
        tvm.runtime.tensor(x.reshape(-1, channels)),
        *(tvm.runtime.tensor(v) for v in consts.values()),
    ]
    lib(*args, result)
    return result.numpy().astype(np.int64).reshape(-1)


@pytest.mark.parametrize("dtype", ["int32", "int16", "int8", "uint8"])
def test_high_product_form_equals_the_int64_chain(dtype):
    rng = np.random.default_rng(1)
    channels = 16
    reals = np.exp(rng.uniform(np.log(1e-6), np.log(0.24), channels))  # below 1/4: S >= 33
    if dtype != "int32":
        reals = np.exp(rng.uniform(np.log(1e-6), np.log(2.0**14), channels))  # pre-shifted
    m, r, s = _constants(rng, reals)
    x = _inputs(dtype, rng)
    x = x[: x.size // channels * channels]
    consts = int32_constants(m, r, s, max(-INFO[dtype][0], INFO[dtype][1]))
    assert consts is not None
    for clip, out in (((0, 127), "uint8"), ((-128, 127), "int8"), (None, "int32")):
        want = _reference(x.reshape(-1, channels), m, r, s, clip).reshape(-1)
        got = _run(requantize_int32, x, consts, clip, out)
        if out == "int32":
            assert np.all(np.abs(want) < 2**31)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16"])
def test_split_form_equals_the_int64_chain(dtype):
    rng = np.random.default_rng(2)
    channels = 16
    # the residual operands' rescales to a 2^16 times finer scale (S = 14 to 23)
    reals = np.exp(rng.uniform(np.log(2.0**8), np.log(2.0**16), channels))
    if dtype == "int16":
        reals = np.exp(rng.uniform(np.log(2.0**15), np.log(2.0**16), channels))
    m, r, s = _constants(rng, reals)
    x = _inputs(dtype, rng)
    x = x[: x.size // channels * channels]
    consts = split_constants(m, r, s, max(-INFO[dtype][0], INFO[dtype][1]))
    assert consts is not None
    want = _reference(x.reshape(-1, channels), m, r, s, None).reshape(-1)
    np.testing.assert_array_equal(_run(requantize_int32_split, x, consts, None, "int32"), want)


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16"])
def test_shift_form_equals_the_int64_chain(dtype):
    """A multiplier of 2^(S + L) with 0 <= R < 2^S (the coarser operand of a residual sum has
    2^16) is a left shift by L, to the bit, per channel, for the largest L that fits; the sum
    kernel (below) computes it so."""
    rng = np.random.default_rng(4)
    channels = 16
    x_max = max(-INFO[dtype][0], INFO[dtype][1])
    left = rng.integers(0, 31 - x_max.bit_length(), channels, endpoint=True)
    left[0] = 31 - x_max.bit_length()
    s = rng.integers(1, 31, channels)
    m = np.int64(1) << (s + left)
    r = rng.integers(0, np.int64(1) << s)
    r[0], r[1] = (1 << int(s[0])) - 1, 1 << int(s[1] - 1)  # the largest R, the usual one
    consts = shift_constants(m, r, s, x_max)
    assert consts is not None
    np.testing.assert_array_equal(consts["shift_left"], left)
    x = _inputs(dtype, rng)
    x = x[: x.size // channels * channels].reshape(-1, channels).astype(np.int64)
    shifted = x << consts["shift_left"].astype(np.int64)
    assert np.all(np.abs(shifted) <= 2**31 - 1)
    np.testing.assert_array_equal(shifted, _reference(x, m, r, s, None))


def test_shift_constants_refuse_what_is_not_a_shift():
    one = [np.array([v]) for v in (2**20, 2**13, 14)]  # M = 2^(14 + 6), R = 2^13
    assert shift_constants(*one, 128)["shift_left"][0] == 6
    assert shift_constants(np.array([3 * 2**19]), *one[1:], 128) is None  # not a power of 2
    assert shift_constants(one[0], np.array([2**14]), one[2], 128) is None  # R >= 2^S
    assert shift_constants(np.array([2**13]), *one[1:], 128) is None  # M < 2^S: L < 0
    assert shift_constants(np.array([0]), np.array([0]), one[2], 128) is None  # M = 0
    assert shift_constants(np.array([2**38]), *one[1:], 128) is None  # 128 << 24: beyond int32
    assert shift_constants(np.array([2**37]), *one[1:], 128) is not None  # 128 << 23 fits


@pytest.mark.parametrize("coarse", [0, 1])
@pytest.mark.parametrize("subtract", [False, True])
def test_requantized_sum_equals_the_int64_chains_summed(subtract, coarse):
    """The residual sum as one kernel: each operand's int64 chain, cast to int32, then added (or
    subtracted) in int32, as the graph does it; an int8 and a uint8 operand at their extremes,
    ``coarse`` the one whose ratio is exactly 2^16 (shifted), the other's below (split)."""
    rng = np.random.default_rng(5)
    channels, count = 16, 4096
    a, b = _inputs("int8", rng, count)[:count], _inputs("uint8", rng, count)[:count]
    chains = []
    for i in (0, 1):
        reals = np.exp(rng.uniform(np.log(2.0**8), np.log(2.0**16), channels))
        chains.append(_constants(rng, np.full(channels, 2.0**16) if i == coarse else reals))
    terms = [
        _reference(x.reshape(-1, channels), *chain, None).astype(np.int32)
        for x, chain in zip((a, b), chains, strict=True)
    ]
    want = (terms[0] - terms[1] if subtract else terms[0] + terms[1]).reshape(-1)
    shift = shift_constants(*chains[coarse], 255)
    split = split_constants(*chains[1 - coarse], 255)
    assert shift is not None and split is not None
    values = [np.full(1, coarse, np.int32), shift["shift_left"], *split.values()]
    at = te.placeholder((count // channels, channels), "int8", name="a")
    bt = te.placeholder((count // channels, channels), "uint8", name="b")
    consts = [te.placeholder(v.shape, "int32", name=f"c{i}") for i, v in enumerate(values)]
    out = requantized_sum(at, bt, *consts, subtract=subtract)
    lib = tvm.compile(te.create_prim_func([at, bt, *consts, out]), target="llvm")
    result = tvm.runtime.tensor(np.zeros((count // channels, channels), np.int32))
    lib(
        *(tvm.runtime.tensor(v) for v in (a.reshape(-1, channels), b.reshape(-1, channels))),
        *(tvm.runtime.tensor(v) for v in values),
        result,
    )
    np.testing.assert_array_equal(result.numpy().reshape(-1), want)


def test_requantized_sum_refuses_other_constant_counts():
    x = te.placeholder((4, 16), "int8", name="x")
    consts = [te.placeholder((16,), "int32", name=f"c{i}") for i in range(5)]
    with pytest.raises(ValueError, match="4 split-form tensors, got 3"):
        requantized_sum(x, x, *consts)


def test_convolutions_pass_8_bit_activations_to_each_other():
    """With the residual sum as one kernel, the projection shortcut's convolution ends at its
    int8 output and the consumer requantizes it in its epilogue: no fused convolution reads an
    int32 activation (4 times the bytes) that another convolution wrote."""
    from onnx_models import TEST_MODELS

    import tvm_intsmooth as tis
    from tvm_intsmooth.pipeline.phases import fused_module
    from tvm_intsmooth.schedule.targets import resolve_target

    images = np.random.default_rng(0).integers(0, 256, (32, 3, 10, 10), dtype=np.uint8)
    smoothed = tis.smooth(TEST_MODELS["residual"](), images, 2.0, batch=4)
    fused = fused_module(smoothed.mod, resolve_target("x86-vnni"))
    made_by, passed, sums = {}, [], 0
    for block in fused["main"].body.blocks:
        for binding in block.bindings:
            call = binding.value
            if getattr(call, "op", None) != tvm.ir.Op.get("relax.call_tir"):
                continue
            name = call.args[0].name_hint
            if "conv" not in name:
                continue
            made_by[binding.var] = name
            sums += "requantized_sum" in name
            for arg in call.args[1].fields:
                if arg in made_by:
                    passed.append((made_by[arg], name, str(arg.ty.dtype)))
    assert sums == 2  # the identity and the projection shortcut's sums
    assert len(passed) >= 5
    assert [p for p in passed if p[2] not in ("int8", "uint8")] == []


def test_the_coarser_operand_of_a_residual_sum_is_a_shift():
    """The quantizer forms a residual sum 2^16 times finer than its coarser operand, whose
    rescaling is then a left shift: the sum kernel takes the flag that says which operand that
    is, its shift, and four constants (the split form) for the other, not eight."""
    from onnx_models import TEST_MODELS

    import tvm_intsmooth as tis
    from tvm_intsmooth.pipeline.phases import build_phases
    from tvm_intsmooth.schedule.targets import resolve_target

    images = np.random.default_rng(0).integers(0, 256, (32, 3, 10, 10), dtype=np.uint8)
    smoothed = tis.smooth(TEST_MODELS["residual"](), images, 2.0, batch=4)
    target = resolve_target("x86-vnni").tvm_target
    with target:
        mod = build_phases(target)[0].passes(smoothed.mod)
    sums = [f for gv, f in mod.functions_items() if gv.name_hint.startswith("requantized_sum")]
    assert len(sums) == 2
    assert [len(f.params) for f in sums] == [2 + 6 + 1] * 2  # operands, constants, output


def test_constants_refuse_what_int32_cannot_hold():
    m, r, s = _constants(None, np.array([0.5]))  # S = 32: an int32 accumulator cannot
    assert int32_constants(m, r, s, 2**31) is None
    assert int32_constants(m, r, s, 127) is not None  # an 8-bit input, pre-shifted
    m, r, s = _constants(None, np.array([2.0**20]))
    assert split_constants(m, r, s, 2**15) is None  # x * M_h beyond int32
    assert int32_constants(np.array([5]), np.array([1]), np.array([0]), 127) is None
    # a multiplier of 0 (a padded lane) is exact as long as R >> S is 0
    assert int32_constants(np.array([0]), np.array([0]), np.array([0]), 2**31) is not None
    assert int32_constants(np.array([0]), np.array([8]), np.array([2]), 2**31) is None


def test_padded_lanes_are_exact_too():
    rng = np.random.default_rng(3)
    m, r, s = _constants(rng, np.full(16, 1e-3))
    m[12:], r[12:], s[12:] = 0, 0, 0  # the blocked layout's padded lanes
    x = _inputs("int32", rng)[:1600]
    consts = int32_constants(m, r, s, 2**31)
    want = _reference(x.reshape(-1, 16), m, r, s, (0, 127)).reshape(-1)
    np.testing.assert_array_equal(_run(requantize_int32, x, consts, (0, 127), "uint8"), want)


@pytest.mark.parametrize("base", ["avx512", "avx2"])
@pytest.mark.parametrize("b_lanes", [16, 1])
def test_x86_high_product_intrinsic_equals_the_int64_chain(base, b_lanes):
    """The high product built from two vpmuldq (the x86 intrinsic tensorize gives the
    requantize_high blocks) at the int32 extremes; built for x86 everywhere, run where the CPU
    has the ISA."""
    from tvm_intsmooth.schedule.intrinsics import x86
    from tvm_intsmooth.schedule.requantize import HIGH_BLOCK
    from tvm_intsmooth.schedule.targets import host_can_run

    register_intrinsics()
    rng = np.random.default_rng(4)
    x = _inputs("int32", rng, 4096)[: 4096 // 16 * 16]
    mult = rng.integers(0, 2**31, b_lanes).astype(np.int32)
    mult[0] = 2**31 - 1
    xt = te.placeholder((x.size // 16, 16), "int32", name="x")
    mt = te.placeholder((b_lanes,), "int32", name="m")
    high = te.compute(
        xt.shape,
        lambda i, j: ((xt[i, j].astype("int64") * mt[j % b_lanes].astype("int64")) >> 32).astype(
            "int32"
        ),
        name=HIGH_BLOCK,
    )
    sch = tvm.s_tir.Schedule(te.create_prim_func([xt, mt, high]))
    lanes = sch.get_loops(sch.get_sblock(HIGH_BLOCK))[-1]
    name = {"avx512": x86.HIGH_AVX512, "avx2": x86.HIGH_AVX2}[base]
    sch.tensorize(lanes, x86.high_name(name, b_lanes, "global", "global"))
    target = {"avx512": "x86-vnni", "avx2": "x86-avx2"}[base]
    from tvm_intsmooth.schedule.targets import resolve_target

    lib = tvm.compile(sch.mod, target=resolve_target(target).tvm_target)
    assert "vpmuldq" in lib.mod.inspect_source("asm")
    if not host_can_run(target):
        pytest.skip(f"{target} kernel built and checked; not run: this CPU lacks the ISA")
    out = tvm.runtime.tensor(np.zeros((x.size // 16, 16), np.int32))
    lib(tvm.runtime.tensor(x.reshape(-1, 16)), tvm.runtime.tensor(mult), out)
    m = np.resize(mult, 16).astype(object)
    want = (x.reshape(-1, 16).astype(object) * m) >> 32
    np.testing.assert_array_equal(out.numpy().astype(np.int64), want.astype(np.int64))
