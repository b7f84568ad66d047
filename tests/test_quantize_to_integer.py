"""QuantizeToInteger: golden-IR tests of the rewrite, and end-to-end integer exactness.

The Expected modules are built by hand from the quantization rules (symmetric per-channel int8
weights, Q31 multipliers, normalization folded into the first layer), with constants computed
here in numpy, independently of the pass.
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from conftest import random_images
from onnx_models import TEST_MODELS, conv_model, ort_qdq_model, residual_model
from tvm import relax, tirx
from tvm.relax import op as R

from tvm_intsmooth.analysis import check_integer_only
from tvm_intsmooth.pipeline.build import lower
from tvm_intsmooth.pipeline.quantize import quantize_static
from tvm_intsmooth.reference import interpret
from tvm_intsmooth.runtime import CompiledClassifier, float_inputs
from tvm_intsmooth.transform.quantize_to_integer import QuantizeToInteger


def _q31(real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Multiplier and shift with real = M / 2^S, M in [2^30, 2^31), via log2."""
    exp = np.floor(np.log2(real)).astype(np.int64) + 1
    mult = np.round(real * 2.0 ** (31 - exp)).astype(np.int64)
    assert np.all((mult >= 2**30) & (mult < 2**31))
    return mult, 31 - exp


def _c(value, dtype):
    return relax.const(np.asarray(value).astype(dtype), dtype)


def _requant(bb, x, real, shape, out_dtype, lo=None, hi=None):
    mult, shift = _q31(np.asarray(real))
    x = bb.emit(R.astype(x, "int64"))
    x = bb.emit(R.multiply(x, _c(mult.reshape(shape), "int64")))
    x = bb.emit(R.add(x, _c((np.int64(1) << (shift - 1)).reshape(shape), "int64")))
    x = bb.emit(R.right_shift(x, _c(shift.reshape(shape), "int64")))
    if lo is not None:
        x = bb.emit(R.clip(x, lo, hi))
    return bb.emit(R.astype(x, out_dtype))


def _per_channel_int8(w, axis):
    moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    scale = np.abs(moved).max(axis=1) / 127
    shape = [1] * w.ndim
    shape[axis] = -1
    return np.round(w / scale.reshape(shape)).astype(np.int8), scale


def test_normalization_folds_into_gemm():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3)).astype(np.float32)
    b = rng.normal(size=3).astype(np.float32)
    batch = tirx.Var("batch", "int64")

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((batch, 4), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            sub = bb.emit(R.subtract(x, relax.const(np.float32(0.5))), "sub")
            mm = bb.emit(R.matmul(sub, relax.const(w)), "mm")
            out = bb.emit_output(bb.emit(R.add(mm, relax.const(b)), "out"))
        bb.emit_func_output(out)
    before = bb.get()

    w_eff = w.astype(np.float64) / 255
    wq, s_w = _per_channel_int8(w_eff, 1)
    bias_norm = np.round((-0.5 * w.astype(np.float64).sum(0)) / s_w).astype(np.int32)
    bias = np.round(b / s_w).astype(np.int32)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((batch, 4), "uint8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            acc = bb.emit(R.matmul(x, _c(wq, "int8"), out_dtype="int32"))
            acc = bb.emit(R.add(acc, _c(bias_norm.reshape(1, 3), "int32")))
            acc = bb.emit(R.add(acc, _c(bias.reshape(1, 3), "int32")))
            logits = _requant(bb, acc, s_w / s_w.max(), (1, 3), "int32")
            out = bb.emit_output(logits)
        bb.emit_func_output(out)
    expected = bb.get()

    after = QuantizeToInteger({})(before)
    tvm.ir.assert_structural_equal(after, expected)


def test_dequantize_conv_quantize_becomes_one_integer_op():
    """relu -> Q -> DQ -> conv(DQ weights): int8 x int8 -> int32, the QDQ scales used exactly."""
    rng = np.random.default_rng(1)
    w1 = rng.normal(size=(2, 1, 1, 1)).astype(np.float32)
    w2q = rng.integers(-127, 128, size=(3, 2, 1, 1)).astype(np.int8)
    s2 = np.array([0.01, 0.02, 0.03], np.float32)
    act_scale = np.float32(0.05)
    batch = tirx.Var("batch", "int64")

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((batch, 1, 1, 1), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            c1 = bb.emit(R.nn.conv2d(x, relax.const(w1)), "c1")
            r = bb.emit(R.nn.relu(c1), "r")
            zp = relax.const(np.int8(0), "int8")
            q = bb.emit(R.quantize(r, relax.const(act_scale), zp), "q")
            d = bb.emit(R.dequantize(q, relax.const(act_scale), zp), "d")
            w2 = bb.emit(
                R.dequantize(_c(w2q, "int8"), relax.const(s2), _c([0, 0, 0], "int8"), axis=0), "w2"
            )
            c2 = bb.emit(R.nn.conv2d(d, w2), "c2")
            out = bb.emit_output(bb.emit(R.reshape(c2, relax.ShapeExpr([batch, 3])), "out"))
        bb.emit_func_output(out)
    before = bb.get()

    w1q, s_w1 = _per_channel_int8(w1.astype(np.float64) / 255, 0)
    c2_scale = 2.0 / 127
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((batch, 1, 1, 1), "uint8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            acc1 = bb.emit(R.nn.conv2d(x, _c(w1q, "int8"), out_dtype="int32"))
            acc1 = bb.emit(R.add(acc1, _c(np.zeros((1, 2, 1, 1)), "int32")))
            q1 = _requant(bb, acc1, s_w1 / float(act_scale), (1, 2, 1, 1), "int8", 0, 127)
            acc2 = bb.emit(R.nn.conv2d(q1, _c(w2q, "int8"), out_dtype="int32"))
            q2 = _requant(
                bb,
                acc2,
                float(act_scale) * s2.astype(np.float64) / c2_scale,
                (1, 3, 1, 1),
                "int8",
                -128,
                127,
            )
            flat = bb.emit(R.reshape(q2, relax.ShapeExpr([batch, 3])))
            out = bb.emit_output(bb.emit(R.astype(flat, "int32")))
        bb.emit_func_output(out)
    expected = bb.get()

    after = QuantizeToInteger({"c2": 2.0, "out": 2.0})(before)
    tvm.ir.assert_structural_equal(after, expected)


def test_unknown_operator_is_named():
    batch = tirx.Var("batch", "int64")
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((batch, 4), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(bb.emit(R.nn.softmax(x), "probs"))
        bb.emit_func_output(out)
    with pytest.raises(Exception, match="relax.nn.softmax"):
        QuantizeToInteger({})(bb.get())


def _check_integer_model(qmodel, reference_logits_fn, images, min_agreement):
    assert check_integer_only(qmodel.mod) == []
    assert check_integer_only(lower(qmodel.mod)) == []
    got = CompiledClassifier(qmodel.mod).logits(images)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, interpret(qmodel.mod, images))
    agreement = np.mean(got.argmax(1) == reference_logits_fn(images).argmax(1))
    assert agreement >= min_agreement, agreement


@pytest.mark.parametrize("name", sorted(TEST_MODELS))
def test_integer_model_is_exact_and_agrees(name, quantized_test_models):
    _, imported, qmodel = quantized_test_models[name]
    images = random_images(imported.input_shape, 256, seed=7)
    float_model = CompiledClassifier(imported.mod)
    # Random weights give small logit margins; trained models agree far more (see benchmarks).
    _check_integer_model(qmodel, lambda x: float_model.logits(float_inputs(x)), images, 0.93)


@pytest.mark.parametrize("make,shape", [(conv_model, (1, 12, 12)), (residual_model, (3, 10, 10))])
def test_onnxruntime_qdq_model(make, shape, tmp_path):
    import onnxruntime as ort

    model = ort_qdq_model(make, shape, tmp_path)
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in model.graph.node}
    qmodel = quantize_static(model, random_images(shape, 64, seed=3))
    # Compared with the float model: ORT's own QDQ run quantizes the input pixels to 7 bits.
    session = ort.InferenceSession(make().SerializeToString())
    _check_integer_model(
        qmodel,
        lambda x: session.run(None, {"input": float_inputs(x)})[0],
        random_images(shape, 256, seed=8),
        0.93,
    )


def test_int16_input_for_noisy_pixels(quantized_test_models):
    model, imported, _ = quantized_test_models["conv"]
    qmodel = quantize_static(
        imported, random_images(imported.input_shape, 64, 1), input_dtype="int16"
    )
    noisy = random_images(imported.input_shape, 32, 2).astype(np.int16) - 100  # beyond 0..255
    got = CompiledClassifier(qmodel.mod).logits(noisy)
    np.testing.assert_array_equal(got, interpret(qmodel.mod, noisy))
    assert qmodel.mod["main"].params[0].ty.dtype == "int16"
    assert check_integer_only(qmodel.mod) == []
