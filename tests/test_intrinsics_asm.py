"""Assembly checks, on every machine (cross-compiling needs no hardware): a blocked int8 3x3 conv
of ResNet-20 shape, scheduled by tensorize_blocked_conv with each target's intrinsic, contains the
target's instruction; where this CPU has the ISA it also runs, equal to numpy bit for bit."""

import re

import numpy as np
import pytest
import tvm
from intrinsics_conv import blocked_conv, host_has, reference, run_blocked_conv

from tvm_intsmooth.schedule import resolve_target
from tvm_intsmooth.schedule.intrinsics import tensor_intrin_for

# target, data dtype, instruction the kernel must contain, CPU feature needed to run it here
CASES = [
    ("x86-vnni", "uint8", "vpdpbusd", "avx512vnni"),
    ("x86-avx2", "uint8", "vpmaddubsw", "avx2"),
    ("rpi5", "uint8", "sdot", None),
    ("rpi4", "uint8", "smull", None),
    ("rpi5", "int8", "sdot", None),
    ("rpi4", "int8", "smull", None),
    ("x86-vnni", "int16", "vpdpwssd", "avx512vnni"),
    ("x86-avx2", "int16", "vpmaddwd", "avx2"),
]


def _compile(target: str, data_dtype: str, channels: int):
    intrin = tensor_intrin_for(target, data_dtype)
    mod = blocked_conv(intrin, n=2, c=channels, k=channels, hw=8)
    return intrin, tvm.compile(mod, target=resolve_target(target).target)


@pytest.mark.parametrize("channels", [16, 32])
@pytest.mark.parametrize(("target", "data_dtype", "mnemonic", "feature"), CASES)
def test_blocked_conv_uses_the_instruction(target, data_dtype, mnemonic, feature, channels):
    intrin, lib = _compile(target, data_dtype, channels)
    assert intrin.asm == mnemonic
    asm = lib.mod.inspect_source("asm")
    assert re.search(rf"\b{mnemonic}\b", asm), f"{target}: no {mnemonic} in the conv kernel"
    if feature is None or not host_has(feature):
        reason = "another architecture" if feature is None else f"this CPU has no {feature}"
        pytest.skip(f"{target} kernel built and checked; not run: {reason}")
    rng = np.random.default_rng(channels)
    info = np.iinfo(data_dtype)  # every data value, up to the AVX2 kernel's bound (127)
    high = info.max if intrin.max_data is None else intrin.max_data
    x = rng.integers(info.min, high, (2, channels, 8, 8), endpoint=True)
    w = rng.integers(-128, 128, (channels, channels, 3, 3))
    np.testing.assert_array_equal(run_blocked_conv(lib, intrin, x, w), reference(x, w))


@pytest.mark.parametrize(
    ("target", "data_dtype", "feature"), [(t, d, f) for t, d, _, f in CASES if f]
)
def test_tensorized_conv_with_an_epilogue_under_its_row_loop(target, data_dtype, feature):
    """The layout's fused kernels: an elementwise epilogue computed per output row, with the
    tensorized conv below it."""
    if not host_has(feature):
        pytest.skip(f"this CPU has no {feature}")
    intrin = tensor_intrin_for(target, data_dtype)
    mod = blocked_conv(intrin, n=1, c=32, k=32, hw=8, epilogue=True)
    lib = tvm.compile(mod, target=resolve_target(target).target)
    rng = np.random.default_rng(5)
    info = np.iinfo(data_dtype)
    high = info.max if intrin.max_data is None else intrin.max_data
    x = rng.integers(info.min, high, (1, 32, 8, 8), endpoint=True)
    w = rng.integers(-128, 128, (32, 32, 3, 3))
    np.testing.assert_array_equal(run_blocked_conv(lib, intrin, x, w), reference(x, w) - 1)


def _post_relu_convs() -> tvm.IRModule:
    """int16 pixels -> 3x3 conv (3 -> 16) -> clip(0, 127) -> int8 -> 3x3 conv (16 -> 32), NCHW,
    with a symbolic batch: what the blocked layout lowers into two fused, tensorized kernels."""
    from tvm import relax, tirx
    from tvm.relax import op as R

    rng = np.random.default_rng(3)
    w1 = relax.const(rng.integers(-128, 128, (16, 3, 3, 3)).astype("int8"))
    w2 = relax.const(rng.integers(-128, 128, (32, 16, 3, 3)).astype("int8"))
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((tirx.Var("batch", "int64"), 3, 8, 8), "int16"))
    with bb.function("main", [x]):
        with bb.dataflow():
            c1 = bb.emit(R.nn.conv2d(x, w1, padding=1, out_dtype="int32"))
            q = bb.emit(R.astype(R.clip(R.right_shift(c1, relax.const(12)), 0, 127), "int8"))
            c2 = bb.emit(R.nn.conv2d(q, w2, padding=1, out_dtype="int32"))
            out = bb.emit_output(c2)
        bb.emit_func_output(out)
    return bb.get()


@pytest.mark.parametrize(("target", "feature"), [("x86-vnni", "avx512vnni"), ("x86-avx2", "avx2")])
def test_blocked_pipeline_with_the_intrinsics_is_exact(target, feature):
    """The default CPU pipeline's blocked kernels (fused epilogue under the row loop, int64
    indices, symbolic batch) with this target's intrinsics equal the numpy interpreter. The AVX2
    intrinsics once had a loop in their body, which went wrong only in this setting."""
    from tvm_intsmooth.pipeline.build import build
    from tvm_intsmooth.reference import interpret

    if not host_has(feature):
        pytest.skip(f"this CPU has no {feature}")
    mod = _post_relu_convs()
    ex = build(mod, target, require_integer_only=True)
    x = np.random.default_rng(4).choice([-32768, -1, 0, 1, 32767], (2, 3, 8, 8)).astype("int16")
    vm = tvm.relax.VirtualMachine(ex, tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    np.testing.assert_array_equal(got, interpret(mod, x))
