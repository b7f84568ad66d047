"""The canonicalization passes, each on a Before module (what a frontend emits) against its
Expected form in TVMScript, and the phase on what TVM's ONNX and PyTorch frontends emit."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax, topi
from tvm.script import ir as I
from tvm.script import relax as R
from tvm.script import tirx as T

from tvm_intsmooth.transform import (
    CanonicalizeClip,
    CanonicalizePRelu,
    CanonicalizeReductions,
    DropMonotoneHead,
    FoldBatchNorm,
    FoldPadding,
    SymbolicBatch,
    UnwrapSingleOutput,
)
from tvm_intsmooth.transform.canonicalize_clip import scalar_clamp_kind
from tvm_intsmooth.transform.drop_monotone_head import ATTR as DROPPED

W = np.arange(8, dtype="float32").reshape(2, 1, 2, 2) / 10 - 0.3  # 2 x 1 x 2 x 2


def _cleanup(mod: tvm.IRModule) -> tvm.IRModule:
    passes = [relax.transform.CanonicalizeBindings(), relax.transform.DeadCodeElimination()]
    return tvm.transform.Sequential(passes)(mod)


def _tir_clip_module(lo: float, hi: float) -> tvm.IRModule:
    """main(x) = minimum(maximum(x, lo), hi) as TIR call_tir, as from_onnx emits ONNX Clip."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((tvm.tirx.Var("batch", "int64"), 3), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            lo_c, hi_c = relax.const(np.float32(lo)), relax.const(np.float32(hi))
            a = bb.emit_te(topi.maximum, x, lo_c, primfunc_name_hint="maximum")
            b = bb.emit_te(topi.minimum, a, hi_c, primfunc_name_hint="minimum")
            out = bb.emit_output(b)
        bb.emit_func_output(out)
    return bb.get()


def test_tir_maximum_minimum_become_one_clip():
    before = _tir_clip_module(0.0, 6.0)
    assert scalar_clamp_kind(before["maximum"]) == "max"
    assert scalar_clamp_kind(before["minimum"]) == "min"

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor(("batch", 3), "float32")) -> R.Tensor(("batch", 3), "float32"):
            with R.dataflow():
                gv = R.clip(x, 0.0, 6.0)
                R.output(gv)
            return gv

    after = _cleanup(CanonicalizeClip()(before))
    tvm.ir.assert_structural_equal(after, Expected)


def test_a_tir_function_that_is_not_a_scalar_clamp_is_left_alone():
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((2, 3), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit_te(topi.add, x, relax.const(np.float32(1.0)), primfunc_name_hint="maximum")
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    before = bb.get()
    assert scalar_clamp_kind(before["maximum"]) is None
    tvm.ir.assert_structural_equal(CanonicalizeClip()(before), before)


def test_relu6_maximum_and_nested_clips():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((2, 3), "float32")):
            with R.dataflow():
                a = R.nn.relu6(x)
                b = R.maximum(R.const(-1.0, "float32"), x)  # the scalar first
                c = R.clip(b, -float("inf"), 2.0)
                d = R.clip(c, 0.5, float("inf"))  # c has one use: merged
                e = R.add(a, d)
                R.output(e)
            return e

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((2, 3), "float32")):
            with R.dataflow():
                a = R.clip(x, 0.0, 6.0)
                d = R.clip(x, 0.5, 2.0)
                e = R.add(a, d)
                R.output(e)
            return e

    tvm.ir.assert_structural_equal(_cleanup(CanonicalizeClip()(Before)), Expected)


def test_batch_norm_folds_into_the_conv_and_its_bias():
    gamma, beta = np.array([1.5, 0.5], "float32"), np.array([0.1, -0.2], "float32")
    mean, var = np.array([0.3, -0.4], "float32"), np.array([2.0, 0.25], "float32")
    bias = np.array([0.05, 0.07], "float32")

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor(("batch", 1, 4, 4), "float32")):
            with R.dataflow():
                c = R.nn.conv2d(x, R.const(W, "float32"))
                b = R.add(c, R.const(bias.reshape(1, 2, 1, 1), "float32"))
                bn = R.nn.batch_norm(
                    b,
                    R.const(gamma),
                    R.const(beta),
                    R.const(mean),
                    R.const(var),
                    axis=1,
                    epsilon=1e-5,
                    training=False,
                )
                y = bn[0]
                R.output(y)
            return y

    s = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + 1e-5)
    w_folded = (W * s.reshape(-1, 1, 1, 1)).astype("float32")
    b_folded = (bias * s + (beta - mean * s)).astype("float32").reshape(1, 2, 1, 1)

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor(("batch", 1, 4, 4), "float32")):
            with R.dataflow():
                c = R.nn.conv2d(x, R.const(w_folded, "float32"))
                y = R.add(c, R.const(b_folded, "float32"))
                R.output(y)
            return y

    tvm.ir.assert_structural_equal(_cleanup(FoldBatchNorm()(Before)), Expected)


def test_batch_norm_of_a_shared_value_is_a_per_channel_affine():
    ones, zeros = np.ones(2, "float32"), np.zeros(2, "float32")
    var = np.array([4.0, 1.0], "float32")

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor(("batch", 2), "float32")):
            with R.dataflow():
                h = R.matmul(x, R.const(np.eye(2, dtype="float32")))
                bn = R.nn.batch_norm(
                    h,
                    R.const(ones),
                    R.const(zeros),
                    R.const(zeros),
                    R.const(var),
                    axis=1,
                    training=False,
                )
                y = R.add(bn[0], h)  # h is read twice: not folded into the matmul
                R.output(y)
            return y

    scale = (1 / np.sqrt(var.astype(np.float64) + 1e-5)).astype("float32").reshape(1, 2)

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor(("batch", 2), "float32")):
            with R.dataflow():
                h = R.matmul(x, R.const(np.eye(2, dtype="float32")))
                m = R.multiply(h, R.const(scale))
                n = R.add(m, R.const(np.zeros((1, 2), "float32")))
                y = R.add(n, h)
                R.output(y)
            return y

    tvm.ir.assert_structural_equal(_cleanup(FoldBatchNorm()(Before)), Expected)


def test_reductions_get_non_negative_axes_and_adaptive_pooling_becomes_a_mean():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor(("batch", 2, 4, 4), "float32")):
            with R.dataflow():
                a = R.mean(x, axis=[-1, -2], keepdims=False)
                b = R.nn.adaptive_avg_pool2d(x, output_size=[1, 1])
                d = R.concat([a, a], axis=-1)
                R.output(b, d)
            return (b, d)

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor(("batch", 2, 4, 4), "float32")):
            with R.dataflow():
                a = R.mean(x, axis=[2, 3], keepdims=False)
                b = R.mean(x, axis=[2, 3], keepdims=True)
                d = R.concat([a, a], axis=1)
                R.output(b, d)
            return (b, d)

    tvm.ir.assert_structural_equal(_cleanup(CanonicalizeReductions()(Before)), Expected)


def test_batch_is_renamed_and_a_fixed_batch_of_one_made_symbolic():
    @I.ir_module
    class Named:
        @R.function
        def main(x: R.Tensor(("N", 4), "float32")):
            with R.dataflow():
                y = R.nn.relu(x)
                R.output(y)
            return y

    @I.ir_module
    class Fixed:
        @R.function
        def main(x: R.Tensor((1, 2, 2, 2), "float32")):
            with R.dataflow():
                y = R.add(x, R.const(np.ones((1, 2, 1, 1), "float32")))
                z = R.reshape(y, R.shape([1, 8]))
                R.output(z)
            return z

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor(("batch", 2, 2, 2), "float32")):
            batch = T.int64()
            with R.dataflow():
                y = R.add(x, R.const(np.ones((1, 2, 1, 1), "float32")))
                z = R.reshape(y, R.shape([batch, 8]))
                R.output(z)
            return z

    renamed = SymbolicBatch()(Named)
    assert renamed["main"].params[0].ty.shape[0].name == "batch"
    tvm.ir.assert_structural_equal(SymbolicBatch()(Fixed), Expected)


def test_a_fixed_batch_the_graph_depends_on_stays_fixed():
    @I.ir_module
    class Fixed:
        @R.function
        def main(x: R.Tensor((1, 4), "float32")):
            with R.dataflow():
                y = R.broadcast_to(x, R.shape([1, 4]))
                R.output(y)
            return y

    tvm.ir.assert_structural_equal(SymbolicBatch()(Fixed), Fixed)


def test_single_output_tuple_is_unwrapped():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor(("batch", 4), "float32")):
            with R.dataflow():
                y = R.nn.relu(x)
                t = (y,)
                R.output(t)
            return t

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor(("batch", 4), "float32")) -> R.Tensor(("batch", 4), "float32"):
            with R.dataflow():
                y = R.nn.relu(x)
                R.output(y)
            return y

    after = relax.transform.DeadCodeElimination()(UnwrapSingleOutput()(Before))
    tvm.ir.assert_structural_equal(after, Expected)


def test_final_softmax_and_monotone_head_are_dropped_and_recorded():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor(("batch", 4), "float32")):
            with R.dataflow():
                h = R.matmul(x, R.const(np.ones((4, 3), "float32")))
                s = R.nn.log_softmax(h, axis=-1)
                t = R.multiply(s, R.const(2.0, "float32"))
                R.output(t)
            return t

    after = DropMonotoneHead()(Before)
    assert after["main"].attrs[DROPPED] == "log_softmax, multiply"
    body = after["main"].body
    assert [b.value.op.name for b in body.blocks[0].bindings] == ["relax.matmul"]
    assert body.body.name == "h"


@pytest.mark.parametrize(
    "head",
    [
        lambda h: R.nn.softmax(h, axis=0),  # over the batch: not the class axis
        lambda h: R.multiply(h, R.const(-1.0, "float32")),  # reverses the order
        lambda h: R.nn.relu(h),  # not strictly increasing: ties
    ],
)
def test_heads_that_change_the_argmax_are_kept(head):
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((tvm.tirx.Var("batch", "int64"), 3), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            h = bb.emit(R.add(x, R.const(np.ones(3, "float32"))))
            out = bb.emit_output(head(h))
        bb.emit_func_output(out)
    before = bb.get()
    tvm.ir.assert_structural_equal(DropMonotoneHead()(before), before)


def test_softmax_inside_the_network_is_kept():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor(("batch", 4), "float32")):
            with R.dataflow():
                s = R.nn.softmax(x, axis=1)
                h = R.matmul(s, R.const(np.ones((4, 3), "float32")))
                R.output(h)
            return h

    tvm.ir.assert_structural_equal(DropMonotoneHead()(Before), Before)


def test_explicit_zero_pad_folds_into_the_convolution():
    """torch.export's padding="same" with an even kernel: pad one row/column at the end."""
    w = np.ones((4, 2, 4, 4), "float32")

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor(("batch", 2, 8, 8), "float32")):
            with R.dataflow():
                p = R.nn.pad(x, pad_width=[0, 0, 0, 0, 0, 1, 0, 1], pad_value=0.0)
                c = R.nn.conv2d(p, R.const(w), padding=[1, 1, 1, 1])
                q = R.nn.pad(c, pad_width=[0, 0, 0, 0, 1, 1, 1, 1], pad_value=float("-inf"))
                m = R.nn.max_pool2d(q, pool_size=[3, 3])
                z = R.nn.pad(m, pad_width=[0, 0, 0, 0, 1, 1, 1, 1], pad_value=0.0)
                a = R.nn.avg_pool2d(z, pool_size=[3, 3])  # excludes padding: kept
                R.output(a)
            return a

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor(("batch", 2, 8, 8), "float32")):
            with R.dataflow():
                c = R.nn.conv2d(x, R.const(w), padding=[1, 1, 2, 2])
                m = R.nn.max_pool2d(c, pool_size=[3, 3], padding=[1, 1, 1, 1])
                z = R.nn.pad(m, pad_width=[0, 0, 0, 0, 1, 1, 1, 1], pad_value=0.0)
                a = R.nn.avg_pool2d(z, pool_size=[3, 3])
                R.output(a)
            return a

    tvm.ir.assert_structural_equal(_cleanup(FoldPadding()(Before)), Expected)


def test_select_of_x_and_a_constant_multiple_becomes_prelu_or_leakyrelu():
    """TVM's PyTorch frontend's PReLU: where(x > 0, x, alpha * x)."""
    alpha = np.array([0.1, -0.2], "float32").reshape(1, 2, 1, 1)

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor(("batch", 2, 3, 3), "float32")):
            with R.dataflow():
                positive = R.greater(x, R.const(0.0, "float32"))
                scaled = R.multiply(R.const(alpha), x)
                p = R.where(positive, x, scaled)
                nonnegative = R.greater_equal(p, R.const(0.0, "float32"))
                leak = R.multiply(p, R.const(0.25, "float32"))
                q = R.where(nonnegative, p, leak)
                r = R.where(positive, leak, x)  # not x-or-alpha*x: kept
                s = R.add(q, r)
                R.output(s)
            return s

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor(("batch", 2, 3, 3), "float32")):
            with R.dataflow():
                positive = R.greater(x, R.const(0.0, "float32"))
                p = R.nn.prelu(x, R.const(alpha.reshape(2)), axis=1)
                leak = R.multiply(p, R.const(0.25, "float32"))  # still read by r
                q = R.nn.leakyrelu(p, alpha=0.25)
                r = R.where(positive, leak, x)
                s = R.add(q, r)
                R.output(s)
            return s

    tvm.ir.assert_structural_equal(_cleanup(CanonicalizePRelu()(Before)), Expected)


def test_the_phase_is_idempotent_names_included():
    """A module canonicalized once (what calibrate keys its ranges by) is unchanged, binding
    names included, when the registered pipeline canonicalizes it again."""
    from onnx_models import residual_model

    from tvm_intsmooth.pipeline import canonical_model

    once = canonical_model(residual_model())
    twice = canonical_model(once.mod)
    tvm.ir.assert_structural_equal(once.mod["main"], twice.mod["main"])

    def names(mod):
        return [b.var.name for b in mod["main"].body.blocks[0].bindings]

    assert names(once.mod) == names(twice.mod)
