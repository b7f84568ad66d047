"""import_onnx (pre-scan + TVM's from_onnx) and the canonicalize phase: float equivalence with
onnxruntime, and clear errors for bad models."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from onnx_models import TEST_MODELS, GraphBuilder

from tvm_intsmooth.errors import IntSmoothError, UnsupportedModelError
from tvm_intsmooth.importer import import_onnx
from tvm_intsmooth.pipeline.canonicalize import canonical_model
from tvm_intsmooth.runtime import CompiledClassifier


@pytest.mark.parametrize("name", sorted(TEST_MODELS))
def test_float_import_matches_onnxruntime(name):
    """The frontend's module and the canonical one both compute the ONNX model."""
    model = TEST_MODELS[name]()
    imported = import_onnx(model)
    canonical = canonical_model(imported)
    x = np.random.default_rng(0).random((8, *imported.input_shape), dtype=np.float32)
    want = ort.InferenceSession(model.SerializeToString()).run(None, {"input": x})[0]
    for mod in (imported.mod, canonical.mod):
        got = CompiledClassifier(mod).logits(x)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert imported.num_classes == want.shape[1]
    assert imported.layout == ("NCHW" if len(imported.input_shape) == 3 else "NC")
    assert canonical.canonical and canonical.frontend_mod is imported.mod


def test_batch_norm_is_folded_into_conv():
    imported = import_onnx(TEST_MODELS["residual"]())
    assert "batch_norm" in imported.mod.script()  # as TVM's frontend emits it
    assert "batch_norm" not in canonical_model(imported).mod.script()


def test_missing_file(tmp_path):
    with pytest.raises(IntSmoothError, match="no such file"):
        import_onnx(tmp_path / "absent.onnx")


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(b"\x08\x07this is not a protobuf" * 10)
    with pytest.raises(IntSmoothError, match="corrupt.onnx"):
        import_onnx(path)


def _every_unsupported_kind() -> onnx.ModelProto:
    """One small graph with every kind of problem the pre-scan knows, each on a named node."""
    g = GraphBuilder((4, 8, 8))
    x = g.relu(g.conv("input", 4))
    shape = g.shapes[x]
    g.nodes.append(helper.make_node("Softmax", [x], ["sm"], name="inner_softmax", axis=1))
    g.nodes.append(helper.make_node("Softsign", ["sm"], ["ss"], name="softsign_a"))
    g.nodes.append(helper.make_node("Softsign", ["ss"], ["ss2"], name="softsign_b"))
    g.nodes.append(helper.make_node("Transpose", ["ss2"], ["tr"], name="swap", perm=[0, 1, 3, 2]))
    g.nodes.append(helper.make_node("Div", ["tr", x], ["dv"], name="ratio"))
    g.nodes.append(helper.make_node("MatMul", ["dv", x], ["att"], name="attention_scores"))
    g.nodes.append(helper.make_node("Clip", ["att", "att", x], ["cl"], name="runtime_clip"))
    g.nodes.append(helper.make_node("Erf", ["cl"], ["erf"], name="gelu_erf"))
    g.nodes.append(
        helper.make_node("MaxPool", ["erf"], ["mp", "idx"], name="pool_idx", kernel_shape=[2, 2])
    )
    g.nodes.append(helper.make_node("Custom", ["mp"], ["cu"], name="my_op", domain="my.domain"))
    g.shapes["cu"] = (shape[0], shape[1] // 2, shape[2] // 2)
    out = g.gemm(g.node("Flatten", ["cu"], (16,), axis=1), 3)
    graph = helper.make_graph(
        g.nodes,
        "every_problem",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4, 8, 8])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", 3])],
        g.inits,
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("my.domain", 1)]
    return helper.make_model(graph, opset_imports=opsets)


def test_every_unsupported_op_kind_is_listed_at_once_by_node_name():
    with pytest.raises(UnsupportedModelError) as err:
        import_onnx(_every_unsupported_kind())
    message = str(err.value)
    assert "\n" not in message  # one paragraph
    expected = [
        "Softmax is inside the network (node: 'inner_softmax')",
        "Softsign is not supported on activations (2 nodes: 'softsign_a', 'softsign_b')",
        "Transpose is not supported on activations (node: 'swap')",
        "Div divides by an activation (node: 'ratio')",
        "MatMul is not activations @ a constant 2-D matrix (node: 'attention_scores')",
        "Clip clips to bounds computed at run time (node: 'runtime_clip')",
        "Erf is not supported on activations (node: 'gelu_erf')",
        "MaxPool returns indices (node: 'pool_idx')",
        "my.domain.Custom is a custom operator of domain 'my.domain' (node: 'my_op')",
    ]
    for part in expected:
        assert part in message, part
    assert "10 problem(s)" not in message and "9 problem(s)" in message
    assert "replace GELU" in message and "only a final softmax" in message  # what to do


def _single_conv(input_dims) -> onnx.ModelProto:
    w = helper.make_tensor("w", TensorProto.FLOAT, [2, 1, 1, 1], [1.0, 2.0])
    conv = helper.make_node("Conv", ["input", "w"], ["y"])
    flat = helper.make_node("Flatten", ["y"], ["out"])
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, input_dims)
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, None)
    graph = helper.make_graph([conv, flat], "g", [inp], [out], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_dynamic_spatial_dimension():
    with pytest.raises(UnsupportedModelError, match="dynamic dimension at axis 2"):
        import_onnx(_single_conv(["N", 1, "H", 4]))


def test_wrong_rank():
    with pytest.raises(UnsupportedModelError, match="rank 3"):
        import_onnx(_single_conv(["N", 4, 4]))


def test_several_inputs():
    model = _single_conv(["N", 1, 4, 4])
    model.graph.input.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1]))
    with pytest.raises(UnsupportedModelError, match="2 data inputs"):
        import_onnx(model)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_initializer_is_refused(bad):
    """NaN/inf weights are refused (compiled, the float reference would "certify" class 0)."""
    g = GraphBuilder((1, 4, 4))
    out = g.gemm(g.flatten("input"), 3)
    model = g.build(out)
    weight = next(i for i in model.graph.initializer if i.name.startswith("w"))
    values = onnx.numpy_helper.to_array(weight).copy()
    values[1, 2] = bad
    weight.CopyFrom(onnx.numpy_helper.from_array(values, weight.name))
    with pytest.raises(UnsupportedModelError, match=f"'{weight.name}' \\(1 of 48 values\\)"):
        import_onnx(model)


def test_non_finite_constant_node_is_refused():
    g = GraphBuilder((1, 4, 4))
    x = g.flatten("input")
    bias = np.array([0.0, np.nan], np.float32)
    g.nodes.append(
        helper.make_node(
            "Constant", [], ["nan_bias"], name="nan_bias", value=onnx.numpy_helper.from_array(bias)
        )
    )
    weight = g.const(np.ones((16, 2), np.float32), "w")
    y = g.node("MatMul", [x, weight], (2,))
    model = g.build(g.node("Add", [y, "nan_bias"], (2,)))
    with pytest.raises(UnsupportedModelError, match="nan_bias.*NaN or infinite"):
        import_onnx(model)
