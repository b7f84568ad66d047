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
