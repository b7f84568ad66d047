"""Golden tests of QuantizeToInteger's rules, Before and Expected written in TVMScript.

Each Expected module spells out one rule (docs/integer_only.md) with its constants computed here
in numpy from the rule, not by the pass: the symmetric per-channel int8 weights, the Q31
multiplier and shift of every requantization, the clamp that a ReLU or Clip folds into, int8 max
pooling, global and windowed average pooling as int32 sums, the residual add whose operands
are rescaled to a common int32 scale 2^16 times finer than the coarser one, and a QDQ layer.
"""

from __future__ import annotations

import numpy as np
import tvm
from test_quantize_to_integer import _per_channel_int8, _q31
from tvm.script import ir as I
from tvm.script import relax as R

from tvm_intsmooth.transform.quantize_to_integer import QuantizeToInteger

W1 = np.array([[[[2.0]]], [[[-1.0]]]], "float32")  # 2 x 1 x 1 x 1: conv of the input image
W2 = np.array([[[[1.0]], [[0.5]]], [[[-1.0]], [[2.0]]]], "float32")  # 2 x 2 x 1 x 1
PIXEL = 1 / 255  # the input scale: uint8 pixel q stands for q / 255


def requant(real: np.ndarray, shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Multiplier, rounding term and shift of round(x * real) in Q31 fixed point."""
    mult, shift = _q31(np.asarray(real, np.float64))
    rounding = np.int64(1) << (shift - 1)
    return mult.reshape(shape), rounding.reshape(shape), shift.reshape(shape)


def first_conv(act_range: float):
    """The first conv's int8 weights and the requantization of its output to scale range/127."""
    wq, s_w = _per_channel_int8(W1.astype(np.float64) * PIXEL, 0)
    return wq, requant(s_w / (act_range / 127), (1, 2, 1, 1))


def test_relu_folds_into_the_clamp_and_max_pool_stays_int8():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor(("batch", 1, 4, 4), "float32")):
            with R.dataflow():
                c = R.nn.conv2d(x, R.const(W1, "float32"))
                r = R.nn.relu(c)
                p = R.nn.max_pool2d(r, pool_size=[2, 2], strides=[2, 2])
                R.output(p)
            return p

    wq, (mult, rounding, shift) = first_conv(2.0)
    zero_bias = np.zeros((1, 2, 1, 1), "int32")  # the input has no offset (no normalization)

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor(("batch", 1, 4, 4), "uint8")):
            with R.dataflow():
                acc = R.nn.conv2d(x, R.const(wq, "int8"), out_dtype="int32")
                c = R.add(acc, R.const(zero_bias, "int32"))
                wide = R.astype(c, "int64")
                scaled = R.multiply(wide, R.const(mult, "int64"))
                rounded = R.add(scaled, R.const(rounding, "int64"))
                shifted = R.right_shift(rounded, R.const(shift, "int64"))
                clamped = R.clip(shifted, 0, 127)  # the ReLU: lower bound 0, no separate op
                r_q = R.astype(clamped, "int8")
                p = R.nn.max_pool2d(r_q, pool_size=[2, 2], strides=[2, 2])  # on int8 as is
                logits = R.astype(p, "int32")
                gv = logits
                R.output(gv)
            return gv

    after = QuantizeToInteger({"c": 2.0, "r": 2.0, "p": 2.0})(Before)
    tvm.ir.assert_structural_equal(after, Expected)


def test_clip_folds_into_the_clamp_and_global_mean_is_an_int32_sum():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor(("batch", 1, 4, 4), "float32")):
            with R.dataflow():
                c = R.nn.conv2d(x, R.const(W1, "float32"))
                r = R.clip(c, 0, 0.5)
                m = R.mean(r, axis=[2, 3], keepdims=False)
                R.output(m)
            return m

    wq, (mult, rounding, shift) = first_conv(1.0)  # r's range 1.0: scale 1/127
    hi = round(0.5 / (1.0 / 127))  # Clip(0, 0.5) becomes the clamp 0..64

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor(("batch", 1, 4, 4), "uint8")):
            with R.dataflow():
                acc = R.nn.conv2d(x, R.const(wq, "int8"), out_dtype="int32")
                c = R.add(acc, R.const(np.zeros((1, 2, 1, 1)), "int32"))
                wide = R.astype(c, "int64")
                scaled = R.multiply(wide, R.const(mult, "int64"))
                rounded = R.add(scaled, R.const(rounding, "int64"))
                shifted = R.right_shift(rounded, R.const(shift, "int64"))
                clamped = R.clip(shifted, 0, hi)
                r_q = R.astype(clamped, "int8")
                r_wide = R.astype(r_q, "int32")
                m = R.sum(r_wide, axis=[2, 3], keepdims=False)  # the 1/16 goes into the scale
                logits = m
                gv = logits
                R.output(gv)
            return gv

    after = QuantizeToInteger({"c": 2.0, "r": 1.0, "m": 1.0})(Before)
    tvm.ir.assert_structural_equal(after, Expected)


def test_residual_add_rescales_both_sides_and_avg_pool_sums_windows():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor(("batch", 1, 4, 4), "float32")):
            with R.dataflow():
                c = R.nn.conv2d(x, R.const(W1, "float32"))
                r = R.nn.relu(c)
                c2 = R.nn.conv2d(r, R.const(W2, "float32"))
                s = R.add(r, c2)
                a = R.nn.avg_pool2d(s, pool_size=[2, 2], strides=[2, 2])
                R.output(a)
            return a

    wq, (mult, rounding, shift) = first_conv(2.0)
    s_r, s_c2, s_s = 2.0 / 127, 4.0 / 127, 4.0 / 127  # int8 scales: calibrated range / 127
    w2q, s_w2 = _per_channel_int8(W2.astype(np.float64), 0)
    mult2, rounding2, shift2 = requant(s_r * s_w2 / s_c2, (1, 2, 1, 1))
    common = max(s_r, s_c2) / 2**16  # the sum's int32 scale: 16 bits finer than the coarser
    mult_r, rounding_r, shift_r = requant(s_r / common, ())  # exactly 2^15
    mult_c, rounding_c, shift_c = requant(s_c2 / common, ())  # exactly 2^16
    mult_s, rounding_s, shift_s = requant(common / s_s, ())  # exactly 2^-16
    ones = np.ones((2, 1, 2, 2), "int8")  # the window sum: a depthwise conv with ones

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor(("batch", 1, 4, 4), "uint8")):
            with R.dataflow():
                acc = R.nn.conv2d(x, R.const(wq, "int8"), out_dtype="int32")
                c = R.add(acc, R.const(np.zeros((1, 2, 1, 1)), "int32"))
                w = R.astype(c, "int64")
                w = R.multiply(w, R.const(mult, "int64"))
                w = R.add(w, R.const(rounding, "int64"))
                w = R.right_shift(w, R.const(shift, "int64"))
                w = R.clip(w, 0, 127)
                r_q = R.astype(w, "int8")
                c2 = R.nn.conv2d(r_q, R.const(w2q, "int8"), out_dtype="int32")
                v = R.astype(c2, "int64")
                v = R.multiply(v, R.const(mult2, "int64"))
                v = R.add(v, R.const(rounding2, "int64"))
                v = R.right_shift(v, R.const(shift2, "int64"))
                v = R.clip(v, -128, 127)
                c2_q = R.astype(v, "int8")
                a1 = R.astype(r_q, "int64")
                a1 = R.multiply(a1, R.const(mult_r, "int64"))
                a1 = R.add(a1, R.const(rounding_r, "int64"))
                a1 = R.right_shift(a1, R.const(shift_r, "int64"))
                left = R.astype(a1, "int32")
                a2 = R.astype(c2_q, "int64")
                a2 = R.multiply(a2, R.const(mult_c, "int64"))
                a2 = R.add(a2, R.const(rounding_c, "int64"))
                a2 = R.right_shift(a2, R.const(shift_c, "int64"))
                right = R.astype(a2, "int32")
                s = R.add(left, right)
                t = R.astype(s, "int64")
                t = R.multiply(t, R.const(mult_s, "int64"))
                t = R.add(t, R.const(rounding_s, "int64"))
                t = R.right_shift(t, R.const(shift_s, "int64"))
                t = R.clip(t, -128, 127)
                s_q = R.astype(t, "int8")
                a = R.nn.conv2d(
                    s_q, R.const(ones, "int8"), strides=[2, 2], groups=2, out_dtype="int32"
                )
                logits = a
                gv = logits
                R.output(gv)
            return gv

    after = QuantizeToInteger({"c": 2.0, "r": 2.0, "c2": 4.0, "s": 4.0, "a": 4.0})(Before)
    tvm.ir.assert_structural_equal(after, Expected)
    assert (int(mult_r), int(shift_r), int(mult_s), int(shift_s)) == (2**30, 15, 2**30, 46)


def test_qdq_dense_keeps_the_models_scales():
    """relu -> QuantizeLinear -> DequantizeLinear -> matmul(DequantizeLinear(int8 weights)): the
    activation takes the model's scale (0.05, not the calibrated range) and the int8 weights are
    used as they are; the last layer's int32 logits share one scale per class up to a constant."""
    w1 = np.array([[1.0, -2.0], [0.5, 1.0]], "float32")  # K x O
    w2q = np.array([[100, -50, 7], [-127, 3, 60]], "int8")
    s2 = np.array([0.01, 0.02, 0.04], "float32")
    zeros = np.zeros(3, "int8")  # zero points

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor(("batch", 2), "float32")):
            with R.dataflow():
                h = R.matmul(x, R.const(w1, "float32"))
                r = R.nn.relu(h)
                q = R.quantize(r, R.const(0.05, "float32"), R.const(0, "int8"))
                d = R.dequantize(q, R.const(0.05, "float32"), R.const(0, "int8"))
                w = R.dequantize(
                    R.const(w2q, "int8"), R.const(s2, "float32"), R.const(zeros, "int8"), axis=1
                )
                o = R.matmul(d, w)
                R.output(o)
            return o

    w1q, s_w1 = _per_channel_int8(w1.astype(np.float64) * PIXEL, 1)
    act = float(np.float32(0.05))
    mult1, rounding1, shift1 = requant(s_w1 / act, (1, 2))
    s_o = act * s2.astype(np.float64)
    mult2, rounding2, shift2 = requant(s_o / s_o.max(), (1, 3))

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor(("batch", 2), "uint8")):
            with R.dataflow():
                acc = R.matmul(x, R.const(w1q, "int8"), out_dtype="int32")
                h = R.add(acc, R.const(np.zeros((1, 2)), "int32"))
                v = R.astype(h, "int64")
                v = R.multiply(v, R.const(mult1, "int64"))
                v = R.add(v, R.const(rounding1, "int64"))
                v = R.right_shift(v, R.const(shift1, "int64"))
                v = R.clip(v, 0, 127)
                q_q = R.astype(v, "int8")
                o = R.matmul(q_q, R.const(w2q, "int8"), out_dtype="int32")
                t = R.astype(o, "int64")
                t = R.multiply(t, R.const(mult2, "int64"))
                t = R.add(t, R.const(rounding2, "int64"))
                t = R.right_shift(t, R.const(shift2, "int64"))
                logits = R.astype(t, "int32")
                gv = logits
                R.output(gv)
            return gv

    after = QuantizeToInteger({"h": 3.0, "r": 3.0, "o": 5.0})(Before)
    tvm.ir.assert_structural_equal(after, Expected)
