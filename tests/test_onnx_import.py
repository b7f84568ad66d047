"""import_onnx: float equivalence with onnxruntime, and clear errors for bad models."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from onnx_models import TEST_MODELS, GraphBuilder

from tvm_intsmooth.errors import IntSmoothError, UnsupportedModelError
from tvm_intsmooth.importer import import_onnx
from tvm_intsmooth.runtime import CompiledClassifier


@pytest.mark.parametrize("name", sorted(TEST_MODELS))
def test_float_import_matches_onnxruntime(name):
    model = TEST_MODELS[name]()
    imported = import_onnx(model)
    x = np.random.default_rng(0).random((8, *imported.input_shape), dtype=np.float32)
    got = CompiledClassifier(imported.mod).logits(x)
    want = ort.InferenceSession(model.SerializeToString()).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert imported.num_classes == want.shape[1]
    assert imported.layout == ("NCHW" if len(imported.input_shape) == 3 else "NC")


def test_batch_norm_is_folded_into_conv():
    imported = import_onnx(TEST_MODELS["residual"]())
    assert "batch_norm" not in imported.mod.script()


def test_missing_file(tmp_path):
    with pytest.raises(IntSmoothError, match="no such file"):
        import_onnx(tmp_path / "absent.onnx")


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(b"\x08\x07this is not a protobuf" * 10)
    with pytest.raises(IntSmoothError, match="corrupt.onnx"):
        import_onnx(path)


def _with_extra_nodes(ops: list[str]) -> onnx.ModelProto:
    g = GraphBuilder((1, 8, 8))
    x = g.relu(g.conv("input", 4))
    for op in ops:
        x = g.node(op, [x], g.shapes[x])
    return g.build(g.gemm(g.flatten(x), 3))


def test_every_unsupported_op_is_listed():
    model = _with_extra_nodes(["Sigmoid", "Tanh", "Sigmoid", "Softsign"])
    with pytest.raises(UnsupportedModelError) as err:
        import_onnx(model)
    message = str(err.value)
    for op in ("Sigmoid (2 nodes", "Tanh (1 node", "Softsign (1 node"):
        assert op in message
    assert "Conv" in message  # the supported list is given


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
