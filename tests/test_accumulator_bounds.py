"""Accumulator overflow bounds: every integer intermediate's worst case is checked at compile time.

The bounds are checked against brute force (the worst-case input reaches them exactly), and a
dense-first 3 x 224 x 224 model, whose first-layer int32 accumulator can overflow on unclipped
noisy pixels, is refused with a clear error.
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from onnx_models import GraphBuilder
from tvm import relax
from tvm.relax import op as R

from tvm_intsmooth.errors import UnsupportedModelError
from tvm_intsmooth.pipeline.smooth import smooth
from tvm_intsmooth.quantize.accumulator_bounds import (
    Interval,
    accumulator_bound,
    check_accumulator_bounds,
)
from tvm_intsmooth.reference import interpret
from tvm_intsmooth.smoothing.noise_table import rounded_gaussian_table


def _dense(weight: np.ndarray, in_dtype: str = "int16") -> relax.Function:
    x = relax.Var("x", relax.TensorType([1, weight.shape[0]], in_dtype))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            acc = bb.emit(R.matmul(x, relax.const(weight, "int8"), out_dtype="int32"), "acc")
            out = bb.emit_output(acc)
        bb.emit_func_output(out)
    return bb.get()["main"]


def test_dense_bound_is_reached_by_the_worst_input():
    rng = np.random.default_rng(0)
    weight = rng.integers(-127, 128, (50, 3)).astype(np.int8)
    lo, hi = -40, 300
    bounds = check_accumulator_bounds(_dense(weight), {"x": Interval(lo, hi)})
    func = _dense(weight)
    # per output channel, the maximum takes hi where w > 0 and lo where w < 0, and vice versa
    top = interpret(func, np.where(weight[:, [0]].T > 0, hi, lo).astype(np.int16))[0, 0]
    bottom = interpret(func, np.where(weight[:, [1]].T > 0, lo, hi).astype(np.int16))[0, 1]
    acc = bounds["acc"]
    assert acc.hi >= top and acc.lo <= bottom
    w = weight.astype(np.int64)
    exact_hi = max((np.maximum(w, 0) * hi + np.minimum(w, 0) * lo).sum(0))
    exact_lo = min((np.maximum(w, 0) * lo + np.minimum(w, 0) * hi).sum(0))
    assert (acc.lo, acc.hi) == (exact_lo, exact_hi)


def test_dense_that_overflows_int32_is_refused():
    weight = np.full((40000, 1), 127, np.int8)  # 40000 x 127 x 500 > 2^31
    with pytest.raises(UnsupportedModelError, match="'acc'.*int32.*overflow"):
        check_accumulator_bounds(_dense(weight), {"x": Interval(0, 500)})
    check_accumulator_bounds(_dense(weight), {"x": Interval(0, 255)})  # 1.3e9 fits


def test_order_free_bound_formula():
    table = rounded_gaussian_table(0.25)
    assert accumulator_bound(3 * 224 * 224, 255 + table.K, 127) > 2**31 - 1
    assert accumulator_bound(3 * 3 * 3, 255 + table.K) < 2**31 - 1


@pytest.fixture(scope="module")
def dense_first_224():
    """A 3 x 224 x 224 image classifier whose first layer is dense (fan-in 150528)."""
    g = GraphBuilder((3, 224, 224), seed=7)
    return g.build(g.gemm(g.flatten("input"), 2))


def test_dense_first_model_overflows_on_unclipped_noise(dense_first_224):
    calib = np.random.default_rng(1).integers(0, 256, (2, 3, 224, 224), dtype=np.uint8)
    with pytest.raises(UnsupportedModelError, match="overflow.*clip") as err:
        smooth(dense_first_224, calib, 0.25, batch=2)
    assert "matmul" in str(err.value) and "int32" in str(err.value)
    # clamped to 0..255, the same layer stays within int32: the check is not a blanket refusal
    smoothed = smooth(dense_first_224, calib, 0.25, batch=2, clip="clip")
    assert isinstance(smoothed.mod, tvm.IRModule)


def test_uint8_quantization_refuses_an_overflowing_first_layer():
    """Clean pixels too: 150528 x 127 x 255 > 2^31 when every weight has the same magnitude."""
    from onnx import numpy_helper

    from tvm_intsmooth.pipeline.quantize import quantize_static

    g = GraphBuilder((3, 224, 224), seed=8)
    model = g.build(g.gemm(g.flatten("input"), 2))
    for init in model.graph.initializer:
        if init.name.startswith("w"):
            value = np.full(numpy_helper.to_array(init).shape, 0.01, np.float32)
            init.CopyFrom(numpy_helper.from_array(value, init.name))
    calib = np.random.default_rng(1).integers(0, 256, (2, 3, 224, 224), dtype=np.uint8)
    with pytest.raises(UnsupportedModelError, match="QuantizeToInteger.*matmul.*int32"):
        quantize_static(model, calib)
