"""Tutorial 02: your own model, as an ONNX file, a QDQ-quantized ONNX file, or a PyTorch module.

    python tutorials/02_your_own_model.py      # about 3 minutes; the PyTorch part needs torch
    INTSMOOTH_TUTORIAL_SMALL=1 python tutorials/02_your_own_model.py  # fast mode

Fast mode: n = 200, 60 calibration images.

What the pipeline expects of a model: one input, float32 pixels in [0, 1] of shape
N x C x H x W with a symbolic batch N (any normalization inside the model), and one output,
N x classes logits. The bundled Fashion-MNIST CNN stands in for "your" model below; replace
MODEL and the images by yours. The calibration images are uint8 pixels, N x C x H x W.

1. An ONNX file: `tis.smooth(path, images, sigma)`. The project's ONNX importer reads it and lists
   every unsupported operator at once if there are any.
2. A QDQ model from onnxruntime's quantizer: the same call; the model's own int8 scales are kept.
3. A PyTorch module: `torch.export` with a dynamic batch, then TVM's own frontend
   `tvm.relax.frontend.torch.from_exported_program`; `tis.smooth` takes the float Relax module.
   (`tvm.relax.frontend.onnx.from_onnx(model, keep_params_in_input=False)` works the same way.)
"""

import os
from pathlib import Path

import numpy as np
import onnx

import tvm_intsmooth as tis
from tvm_intsmooth.assets import DEMO_DATA, DEMO_MODEL
from tvm_intsmooth.data import load_npz

SMALL = os.environ.get("INTSMOOTH_TUTORIAL_SMALL") == "1"  # the tests' setting
N, CALIB = (200, 60) if SMALL else (10_000, 500)
OUT = Path(os.environ.get("INTSMOOTH_TUTORIAL_OUT", "tutorial-output")) / "02_your_own_model"
OUT.mkdir(parents=True, exist_ok=True)
SIGMA, SEED = 0.25, 2026  # a fixed seed so that the three models see the same noise

MODEL = DEMO_MODEL  # your ONNX file
images, labels = load_npz(DEMO_DATA)
calibration, test_image, test_label = images[:CALIB], images[-1], labels[-1]


def certify(smoothed: tis.SmoothedModel, name: str) -> None:
    classifier = tis.SmoothedClassifier.from_model(smoothed)  # built for this CPU
    cert = classifier.certify(test_image, 100, N, 0.001, index=len(images) - 1, seed=SEED)
    print(
        f"{name}: label {test_label}, prediction {cert.prediction}, radius {cert.radius:.3f} "
        f"({cert.n_a}/{cert.n} votes)",
        flush=True,
    )


# 1. An ONNX file.
certify(tis.smooth(MODEL, calibration, SIGMA), "ONNX file")

# 2. A QDQ model, quantized by onnxruntime (QuantizeLinear/DequantizeLinear around each layer).
from onnxruntime.quantization import (  # noqa: E402
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)


class Reader(CalibrationDataReader):
    """onnxruntime's calibration reader: float pixels in [0, 1]."""

    def __init__(self, x: np.ndarray):
        self.batches = iter(
            [{"input": x[i : i + 20] / np.float32(255)} for i in range(0, len(x), 20)]
        )

    def get_next(self):
        return next(self.batches, None)


qdq = OUT / "model.qdq.onnx"
quantize_static(
    str(MODEL), str(qdq), Reader(calibration.astype(np.float32)), quant_format=QuantFormat.QDQ,
    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True,
)  # fmt: skip
certify(tis.smooth(qdq, calibration, SIGMA), "QDQ ONNX")

# 3. A PyTorch module through TVM's PyTorch frontend.
try:
    import torch
except ImportError:
    print("PyTorch is not installed: skipping the PyTorch part (pip install torch)")
    raise SystemExit(0) from None
from onnx import numpy_helper  # noqa: E402
from tvm.relax.frontend.torch import from_exported_program  # noqa: E402

from tvm_intsmooth.train.models import build_model  # noqa: E402

net = build_model("cnn", (1, 28, 28), 10, mean=[0.0], std=[1.0])  # your torch.nn.Module
weights = onnx.load(str(MODEL)).graph.initializer  # here: the bundled model's trained weights
net.load_state_dict({w.name: torch.from_numpy(numpy_helper.to_array(w).copy()) for w in weights})
net.eval()
exported = torch.export.export(
    net, (torch.zeros(2, 1, 28, 28),), dynamic_shapes={"x": {0: torch.export.Dim("batch")}}
)
float_module = from_exported_program(exported, keep_params_as_input=False)
certify(tis.smooth(float_module, calibration, SIGMA), "PyTorch")
