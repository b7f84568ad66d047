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
