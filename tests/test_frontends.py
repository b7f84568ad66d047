"""TVM's own frontends feed the integer passes: the bundled CNN through
``tvm.relax.frontend.onnx.from_onnx`` and through ``torch.export`` +
``tvm.relax.frontend.torch.from_exported_program``.

The integer classifier must agree with the float model (onnxruntime for the ONNX file, PyTorch
for the PyTorch module: both independent of TVM) on >= 99% of the bundled test images, the 300
that calibration did not see.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import tvm_intsmooth as tis
from tvm_intsmooth.assets import DEMO_DATA, DEMO_MODEL
from tvm_intsmooth.data import load_npz
from tvm_intsmooth.errors import UnsupportedModelError
from tvm_intsmooth.runtime import CompiledClassifier, float_inputs

CALIB = 200


@pytest.fixture(scope="module")
def data():
    return load_npz(DEMO_DATA)


def integer_predictions(model, images: np.ndarray) -> np.ndarray:
    quantized = tis.quantize_static(model, images[:CALIB])
    assert tis.check_integer_only(quantized.mod) == []
    return CompiledClassifier(quantized.mod).logits(images).argmax(1)


@pytest.mark.slow
def test_from_onnx_module_agrees_with_onnxruntime(data):
    import onnxruntime as ort
    from tvm.relax.frontend.onnx import from_onnx

    x, _ = data
    proto = onnx.load(str(DEMO_MODEL))
    session = ort.InferenceSession(proto.SerializeToString())
    float_pred = session.run(None, {"input": float_inputs(x)})[0].argmax(1)
    mod = from_onnx(proto, keep_params_in_input=False)
    int_pred = integer_predictions(mod, x)
    agreement = np.mean(int_pred[CALIB:] == float_pred[CALIB:])
    assert agreement >= 0.99, f"from_onnx: {agreement:.4f} of {len(x) - CALIB} images agree"


@pytest.mark.slow
def test_pytorch_module_agrees_with_pytorch(data):
    torch = pytest.importorskip("torch")
    from tvm.relax.frontend.torch import from_exported_program

    from tvm_intsmooth.train.models import build_model

    x, _ = data
    proto = onnx.load(str(DEMO_MODEL))
    net = build_model("cnn", (1, 28, 28), 10, [0.0], [1.0])  # the file's weights replace these
    weights = {i.name: numpy_helper.to_array(i).copy() for i in proto.graph.initializer}
    net.load_state_dict({name: torch.from_numpy(w) for name, w in weights.items()})
    net.eval()
    with torch.no_grad():
        float_pred = net(torch.from_numpy(float_inputs(x))).numpy().argmax(1)
    example = (torch.zeros(2, 1, 28, 28),)
    batch = {"x": {0: torch.export.Dim("batch")}}
    exported = torch.export.export(net, example, dynamic_shapes=batch)
    mod = from_exported_program(exported, keep_params_as_input=False)
    int_pred = integer_predictions(mod, x)
    agreement = np.mean(int_pred[CALIB:] == float_pred[CALIB:])
    assert agreement >= 0.99, f"PyTorch: {agreement:.4f} of {len(x) - CALIB} images agree"


def test_fixed_batch_of_one_is_made_symbolic(data):
    """from_onnx with a batch-1 shape_dict: the batch becomes symbolic (SymbolicBatch), and the
    integer graph is the one of the symbolic-batch import."""
    import tvm
    from tvm.relax.frontend.onnx import from_onnx

    x, _ = data
    proto = onnx.load(str(DEMO_MODEL))
    fixed = from_onnx(proto, shape_dict={"input": [1, 1, 28, 28]}, keep_params_in_input=False)
    assert "(1, 1, 28, 28)" in fixed["main"].script()
    quantized = tis.quantize_static(fixed, x[:16])
    symbolic = tis.quantize_static(DEMO_MODEL, x[:16])
    assert str(quantized.mod["main"].params[0].ty.shape[0]) == "batch"
    tvm.ir.assert_structural_equal(quantized.mod["main"], symbolic.mod["main"], map_free_vars=True)


def test_fixed_batch_other_than_one_is_a_clear_error():
    from tvm.relax.frontend.onnx import from_onnx

    proto = onnx.load(str(DEMO_MODEL))
    mod = from_onnx(proto, shape_dict={"input": [2, 1, 28, 28]}, keep_params_in_input=False)
    with pytest.raises(UnsupportedModelError, match="fixed batch dimension"):
        tis.quantize_static(mod, np.zeros((2, 1, 28, 28), np.uint8))


def test_parameters_as_inputs_are_a_clear_error():
    from tvm.relax.frontend.onnx import from_onnx

    mod = from_onnx(onnx.load(str(DEMO_MODEL)), keep_params_in_input=True)
    with pytest.raises(UnsupportedModelError, match="keep_params_in_input=False"):
        tis.smooth(mod, np.zeros((1, 1, 28, 28), np.uint8), 0.25)


def test_other_objects_are_a_clear_error():
    with pytest.raises(tis.IntSmoothError, match="expected an ONNX file path"):
        tis.quantize_static(42, np.zeros((1, 1, 28, 28), np.uint8))


def test_torch_export_with_a_fixed_batch_gives_the_graph_of_a_dynamic_one():
    """torch.export without dynamic_shapes fixes the batch at the example's 1 (the mean over
    [-2, -1] and x.view(x.size(0), -1) included): the same integer graph as a dynamic export."""
    torch = pytest.importorskip("torch")
    import sys
    from pathlib import Path

    import tvm

    sys.path.insert(0, str(Path(__file__).parent / "zoo"))
    from zoo_models import EfficientNetLite

    torch.manual_seed(0)
    net = EfficientNetLite().eval()
    images = np.random.default_rng(0).integers(0, 256, (16, 3, 32, 32), dtype=np.uint8)
    fixed = torch.export.export(net, (torch.zeros(1, 3, 32, 32),))
    dynamic = torch.export.export(
        net, (torch.zeros(2, 3, 32, 32),), dynamic_shapes={"x": {0: torch.export.Dim("batch")}}
    )
    a, b = (tis.quantize_static(p, images).mod["main"] for p in (fixed, dynamic))
    assert str(a.params[0].ty.shape[0]) == "batch"
    tvm.ir.assert_structural_equal(a, b, map_free_vars=True)
