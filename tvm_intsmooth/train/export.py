"""Export a trained model to a single-file ONNX model (opset 17, dynamic batch)."""

from __future__ import annotations

from pathlib import Path

import onnx
import torch
from torch import nn

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def export_onnx(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    path: str | Path,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write ``model`` as one ONNX file taking ``input`` (N x C x H x W, pixel / 255).

    ``metadata`` entries (training command, dataset, sigma...) go into the model's
    ``metadata_props``. Returns the path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    example = torch.zeros(1, *input_shape)
    torch.onnx.export(
        model,
        (example,),
        str(path),
        dynamo=False,
        opset_version=OPSET,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        do_constant_folding=True,
    )
    proto = onnx.load(str(path))
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path), save_as_external_data=False)
    return path
