"""Export a trained model to a single-file ONNX model (opset 17, dynamic batch)."""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def _drop_identities(graph: onnx.GraphProto) -> None:
    """Remove Identity nodes (the exporter emits them for duplicated constants) by rewiring."""
    outputs = {o.name for o in graph.output}
    alias = {
        n.output[0]: n.input[0]
        for n in graph.node
        if n.op_type == "Identity" and n.output[0] not in outputs
    }
    kept = [n for n in graph.node if not (n.op_type == "Identity" and n.output[0] in alias)]
    for node in kept:
        for i, name in enumerate(node.input):
            while name in alias:
                name = alias[name]
            node.input[i] = name
    del graph.node[:]
    graph.node.extend(kept)


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
    # The TorchScript exporter is deprecated in favour of the dynamo one, which needs onnxscript,
    # a dependency the project does not take; its output is the same plain opset-17 graph.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
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
    _drop_identities(proto.graph)
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path), save_as_external_data=False)
    return path
