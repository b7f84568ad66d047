"""InjectIntegerNoise: golden-IR tests of the rewrite, its argument checks, and its numbers.

The Expected modules are built by hand with a BlockBuilder from the pass's documented output
(noise call_tir, reshape, add to the int16 pixels, clip, then the classifier inlined with its
batch bound); the noise PrimFunc itself is taken from ``noise_primfunc`` (tested on its own in
test_noise_sampler.py), with the opaque op_pattern the pass gives it.
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax, tirx
from tvm.relax import op as R

from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.smoothing.noise_sampler import noise_primfunc, sample_noise_numpy
from tvm_intsmooth.smoothing.noise_table import rounded_gaussian_table
from tvm_intsmooth.transform.inject_integer_noise import InjectIntegerNoise

SHAPE = (1, 2, 3)  # C, H, W
COORDS = 6
CLASSES = 4
WEIGHT = (np.arange(COORDS * CLASSES, dtype=np.int32).reshape(COORDS, CLASSES) * 7) % 11 - 5
NOISE_NAME = "intsmooth_rounded_gaussian_noise"
OPAQUE = 8


def _classifier(input_dtype: str = "int16", symbolic: bool = True) -> tvm.IRModule:
    """``main(x: int16[n, 1, 2, 3]) -> int32[n, 4]``: flatten, matmul by WEIGHT."""
    n = tirx.Var("n", "int64") if symbolic else 3
    x = relax.Var("x", relax.TensorType([n, *SHAPE], input_dtype))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            wide = bb.emit(R.astype(x, "int32"))
            flat = bb.emit(R.reshape(wide, [n, COORDS]))
            out = bb.emit_output(R.matmul(flat, relax.const(WEIGHT, "int32")))
        bb.emit_func_output(out)
    return bb.get()


def _expected(sigma: float, batch: int, clip: bool, bits: int = 64) -> tvm.IRModule:
    table = rounded_gaussian_table(sigma, bits=bits)
    pixels = relax.Var("pixels", relax.TensorType([1, *SHAPE], "uint8"))
    seed = relax.Var("seed", relax.TensorType([2], "int64"))
    counter = relax.Var("counter", relax.TensorType([3], "int64"))
    bb = relax.BlockBuilder()
    noise_func = noise_primfunc(table, batch, COORDS).with_attr("op_pattern", OPAQUE)
    noise_gv = bb.add_func(noise_func, NOISE_NAME)
    with bb.function("main", [pixels, seed, counter]):
        with bb.dataflow():
            noise = bb.emit(
                R.call_tir(
                    noise_gv, [seed, counter], out_ty=relax.TensorType([batch, COORDS], "int16")
                )
            )
            noise = bb.emit(R.reshape(noise, [batch, *SHAPE]))
            noisy = bb.emit(R.add(bb.emit(R.astype(pixels, "int16")), noise))
            if clip:
                noisy = bb.emit(R.clip(noisy, 0, 255))
            wide = bb.emit(R.astype(noisy, "int32"))
            flat = bb.emit(R.reshape(wide, [batch, COORDS]))
            out = bb.emit_output(R.matmul(flat, relax.const(WEIGHT, "int32")))
        bb.emit_func_output(out)
    return bb.get()


@pytest.mark.parametrize(
    ("sigma", "batch", "clip", "bits"),
    [(0.25, 5, "clip", 64), (0.1, 2, "none", 64), (0.5, 3, "clip", 32)],
)
def test_inject_matches_hand_built_module(sigma, batch, clip, bits):
    after = InjectIntegerNoise(sigma, batch, clip=clip, bits=bits)(_classifier())
    tvm.ir.assert_structural_equal(after, _expected(sigma, batch, clip == "clip", bits))


@pytest.mark.parametrize("clip", ["none", "clip"])
def test_inject_computes_noisy_logits(clip):
    """Compiled, the rewritten main equals numpy: (pixels + noise) @ WEIGHT, with the noisy
    pixels clamped to 0..255 under the "clip" policy and left alone under "none"."""
    batch, seed, stream, offset = 4, 2**63 + 11, 2**32 + 3, 17
    table = rounded_gaussian_table(0.5)
    ex = tvm.compile(InjectIntegerNoise(0.5, batch, clip=clip)(_classifier()), target="llvm")
    vm = relax.VirtualMachine(ex, tvm.cpu())
    # Pixels at both ends of the range, where clipping changes the sum.
    pixels = np.array([0, 1, 128, 254, 255, 3], np.uint8).reshape(1, *SHAPE)
    seed_words = np.array([seed & 0xFFFFFFFF, seed >> 32], np.int64)
    counter = np.array([stream & 0xFFFFFFFF, stream >> 32, offset], np.int64)
    logits = vm["main"](*(tvm.runtime.tensor(a) for a in (pixels, seed_words, counter))).numpy()

    noise = sample_noise_numpy(table, seed, stream, offset, batch, COORDS).astype(np.int64)
    noisy = pixels.reshape(1, COORDS).astype(np.int64) + noise
    if clip == "clip":
        noisy = np.clip(noisy, 0, 255)
    assert np.any(pixels.reshape(1, COORDS) + noise > 255)  # the policy makes a difference
    assert np.any(pixels.reshape(1, COORDS) + noise < 0)
    np.testing.assert_array_equal(logits, noisy @ WEIGHT.astype(np.int64))


@pytest.mark.parametrize("sigma", [0.0, -0.25])
def test_nonpositive_sigma_is_rejected(sigma):
    with pytest.raises(IntSmoothError, match="sigma"):
        InjectIntegerNoise(sigma, 4)


@pytest.mark.parametrize("batch", [0, -3, 2.0, True])
def test_bad_batch_is_rejected(batch):
    with pytest.raises(IntSmoothError, match="batch"):
        InjectIntegerNoise(0.25, batch)


def test_unknown_noise_kind_is_rejected():
    with pytest.raises(IntSmoothError, match="discrete_gaussian"):
        InjectIntegerNoise(0.25, 4, noise="discrete_gaussian")


def test_unknown_clip_policy_is_rejected():
    with pytest.raises(IntSmoothError, match="clip policy"):
        InjectIntegerNoise(0.25, 4, clip="wrap")


def test_uint8_input_classifier_is_rejected():
    with pytest.raises(IntSmoothError, match="int16"):
        InjectIntegerNoise(0.25, 4)(_classifier(input_dtype="uint8"))


def test_static_batch_classifier_is_rejected():
    with pytest.raises(IntSmoothError, match="symbolic batch"):
        InjectIntegerNoise(0.25, 4)(_classifier(symbolic=False))
