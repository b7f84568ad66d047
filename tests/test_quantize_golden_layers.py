"""Golden tests of QuantizeToInteger's rules for the layers of today's common CNNs (issue 19),
Before and Expected in TVMScript, every constant computed here in numpy from the rule (not by
the pass): concat on one int8 scale, the product of two activations, a 256-entry lookup table
(and x * sigmoid(x) fused into one), LeakyReLU as an int32 select, an average pool whose divisor
varies per position, a mean over the channel axis."""

from __future__ import annotations

import numpy as np
import tvm
from test_quantize_golden import W1, first_conv, requant
from tvm.script import ir as I
from tvm.script import relax as R

from tvm_intsmooth.quantize.fixed_point import quantize_multiplier
from tvm_intsmooth.transform.quantize_to_integer import QuantizeToInteger

ZERO_BIAS = np.zeros((1, 2, 1, 1), "int32")


def table(fn, s_in: float, s_out: float) -> np.ndarray:
    q = np.arange(-128, 128, dtype=np.float64)
    return np.clip(np.round(fn(q * s_in) / s_out), -128, 127).astype("int8")


def sigmoid(t):
    return 1 / (1 + np.exp(-t))


def test_concat_requantizes_each_input_straight_to_the_output_scale():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor(("batch", 1, 4, 4), "float32")):
            with R.dataflow():
                a = R.nn.conv2d(x, R.const(W1, "float32"))
                r = R.nn.relu(a)
                b = R.nn.conv2d(x, R.const(W1 * 3, "float32"))
                c = R.concat((r, b), axis=1)
                R.output(c)
            return c

    s_c = 4.0 / 127  # c's int8 scale: both inputs go straight to it
    wq, (mult_a, rounding_a, shift_a) = first_conv(4.0)
    mult_b, rounding_b, shift_b = requant(3 * _conv_scale() / s_c, (1, 2, 1, 1))  # 3x W1

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor(("batch", 1, 4, 4), "uint8")):
            with R.dataflow():
                acc = R.nn.conv2d(x, R.const(wq, "int8"), out_dtype="int32")
                a = R.add(acc, R.const(ZERO_BIAS, "int32"))
                acc2 = R.nn.conv2d(x, R.const(wq, "int8"), out_dtype="int32")
                b = R.add(acc2, R.const(ZERO_BIAS, "int32"))
                v = R.astype(a, "int64")
                v = R.multiply(v, R.const(mult_a, "int64"))
                v = R.add(v, R.const(rounding_a, "int64"))
                v = R.right_shift(v, R.const(shift_a, "int64"))
                v = R.clip(v, 0, 127)  # the ReLU's clamp, applied on the way
                r_q = R.astype(v, "int8")
                w = R.astype(b, "int64")
                w = R.multiply(w, R.const(mult_b, "int64"))
                w = R.add(w, R.const(rounding_b, "int64"))
                w = R.right_shift(w, R.const(shift_b, "int64"))
                w = R.clip(w, -128, 127)
                b_q = R.astype(w, "int8")
                c = R.concat((r_q, b_q), axis=1)
                logits = R.astype(c, "int32")
                gv = logits
                R.output(gv)
            return gv

    after = QuantizeToInteger({"a": 2.0, "r": 2.0, "b": 4.0, "c": 4.0})(Before)
    tvm.ir.assert_structural_equal(after, Expected)


def test_product_of_two_activations_is_an_int32_product_of_int8s():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor(("batch", 1, 4, 4), "float32")):
            with R.dataflow():
                a = R.nn.conv2d(x, R.const(W1, "float32"))
                r = R.nn.relu(a)
                g = R.mean(r, axis=[-2, -1], keepdims=True)
                m = R.multiply(r, g)
                R.output(m)
            return m

    wq, (mult, rounding, shift) = first_conv(2.0)
    s_r = 2.0 / 127
    s_g = 1.0 / 127
    mult_g, rounding_g, shift_g = requant((s_r / 16) / s_g, ())  # the mean's sum to g's scale

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor(("batch", 1, 4, 4), "uint8")):
            with R.dataflow():
                acc = R.nn.conv2d(x, R.const(wq, "int8"), out_dtype="int32")
                a = R.add(acc, R.const(ZERO_BIAS, "int32"))
                v = R.astype(a, "int64")
                v = R.multiply(v, R.const(mult, "int64"))
                v = R.add(v, R.const(rounding, "int64"))
                v = R.right_shift(v, R.const(shift, "int64"))
                v = R.clip(v, 0, 127)
                r_q = R.astype(v, "int8")
                wide = R.astype(r_q, "int32")
                g = R.sum(wide, axis=[2, 3], keepdims=True)  # axes [-2, -1]: the same sum
                t = R.astype(g, "int64")
                t = R.multiply(t, R.const(mult_g, "int64"))
                t = R.add(t, R.const(rounding_g, "int64"))
                t = R.right_shift(t, R.const(shift_g, "int64"))
                t = R.clip(t, -128, 127)
                g_q = R.astype(t, "int8")
                left = R.astype(r_q, "int32")
                right = R.astype(g_q, "int32")
                m = R.multiply(left, right)  # scale s_r * s_g: one scale, no rescaling
                logits = m
                gv = logits
                R.output(gv)
            return gv

    after = QuantizeToInteger({"a": 2.0, "r": 2.0, "g": 1.0, "m": 2.0})(Before)
    tvm.ir.assert_structural_equal(after, Expected)


def test_sigmoid_and_silu_become_one_lookup_table():
    """x * sigmoid(x) (SiLU as ONNX writes it): one table of t * sigmoid(t), indexed by q + 128."""

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor(("batch", 1, 4, 4), "float32")):
            with R.dataflow():
                a = R.nn.conv2d(x, R.const(W1, "float32"))
                s = R.sigmoid(a)
                m = R.multiply(a, s)
                R.output(m)
            return m

    wq, _ = first_conv(2.0)
    s_a = 2.0 / 127
    mult, rounding, shift = requant(
        _conv_scale() / s_a, (1, 2, 1, 1)
    )  # a, unclamped, to its own scale
    lut = table(lambda t: t * sigmoid(t), s_a, 1.5 / 127)

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor(("batch", 1, 4, 4), "uint8")):
            with R.dataflow():
                acc = R.nn.conv2d(x, R.const(wq, "int8"), out_dtype="int32")
                a = R.add(acc, R.const(ZERO_BIAS, "int32"))
                v = R.astype(a, "int64")
                v = R.multiply(v, R.const(mult, "int64"))
                v = R.add(v, R.const(rounding, "int64"))
                v = R.right_shift(v, R.const(shift, "int64"))
                v = R.clip(v, -128, 127)
                a_q = R.astype(v, "int8")
                index = R.add(R.astype(a_q, "int32"), R.const(128, "int32"))
                m = R.take(R.const(lut, "int8"), index, axis=0)
                logits = R.astype(m, "int32")
                gv = logits
                R.output(gv)
            return gv

    after = QuantizeToInteger({"a": 2.0, "s": 1.0, "m": 1.5})(Before)
    tvm.ir.assert_structural_equal(after, Expected)


def _conv_scale() -> np.ndarray:
    """The first conv's per-channel accumulator scale (int8 weights of W1 / 255)."""
    w = W1.astype(np.float64) / 255
    return np.abs(w.reshape(2, -1)).max(axis=1) / 127


def test_leaky_relu_is_an_int32_select_with_a_fixed_point_slope():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor(("batch", 1, 4, 4), "float32")):
            with R.dataflow():
                a = R.nn.conv2d(x, R.const(W1, "float32"))
                y = R.nn.leakyrelu(a, alpha=0.125)
                R.output(y)
            return y

    wq, _ = first_conv(2.0)
    scale = _conv_scale()
    m_alpha, s_alpha = quantize_multiplier(np.float64(0.125))
    final = requant(scale / scale.max(), (1, 2, 1, 1))

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor(("batch", 1, 4, 4), "uint8")):
            with R.dataflow():
                acc = R.nn.conv2d(x, R.const(wq, "int8"), out_dtype="int32")
                a = R.add(acc, R.const(ZERO_BIAS, "int32"))
                n = R.astype(a, "int64")
                n = R.multiply(n, R.const(m_alpha, "int64"))
                n = R.add(n, R.const(np.int64(1) << (s_alpha - 1), "int64"))
                n = R.right_shift(n, R.const(s_alpha, "int64"))
                negative = R.astype(n, "int32")
                positive = R.greater(a, R.const(0, "int32"))
                y = R.where(positive, a, negative)  # at the accumulator's scale
                t = R.astype(y, "int64")
                t = R.multiply(t, R.const(final[0], "int64"))
                t = R.add(t, R.const(final[1], "int64"))
                t = R.right_shift(t, R.const(final[2], "int64"))
                logits = R.astype(t, "int32")
                gv = logits
                R.output(gv)
            return gv

    after = QuantizeToInteger({"a": 2.0, "y": 2.0})(Before)
    tvm.ir.assert_structural_equal(after, Expected)


def test_average_pool_excluding_padding_divides_per_position():
    """A 3x3 / stride 1 / pad 1 average that excludes the padding: corners divide by 4, edges
    by 6, the inside by 9: the window sum times 2^16 / divisor, at the scale s / 2^16."""

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor(("batch", 1, 4, 4), "float32")):
            with R.dataflow():
                a = R.nn.conv2d(x, R.const(W1, "float32"))
                r = R.nn.relu(a)
                p = R.nn.avg_pool2d(r, pool_size=[3, 3], padding=[1, 1, 1, 1])
                R.output(p)
            return p

    wq, (mult, rounding, shift) = first_conv(2.0)
    divisors = np.array([[4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6], [4, 6, 6, 4]], np.float64)
    m_p, s_p = quantize_multiplier((2.0**16 / divisors).reshape(1, 1, 4, 4))
    ones = np.ones((2, 1, 3, 3), "int8")

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor(("batch", 1, 4, 4), "uint8")):
            with R.dataflow():
                acc = R.nn.conv2d(x, R.const(wq, "int8"), out_dtype="int32")
                a = R.add(acc, R.const(ZERO_BIAS, "int32"))
                v = R.astype(a, "int64")
                v = R.multiply(v, R.const(mult, "int64"))
                v = R.add(v, R.const(rounding, "int64"))
                v = R.right_shift(v, R.const(shift, "int64"))
                v = R.clip(v, 0, 127)
                r_q = R.astype(v, "int8")
                total = R.nn.conv2d(
                    r_q, R.const(ones, "int8"), padding=[1, 1, 1, 1], groups=2, out_dtype="int32"
                )
                t = R.astype(total, "int64")
                t = R.multiply(t, R.const(m_p, "int64"))
                t = R.add(t, R.const(np.int64(1) << (s_p - 1), "int64"))
                t = R.right_shift(t, R.const(s_p, "int64"))
                p = R.astype(t, "int32")
                logits = p
                gv = logits
                R.output(gv)
            return gv

    after = QuantizeToInteger({"a": 2.0, "r": 2.0, "p": 2.0})(Before)
    tvm.ir.assert_structural_equal(after, Expected)
