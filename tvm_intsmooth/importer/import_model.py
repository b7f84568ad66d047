"""One entry for every kind of model the pipeline accepts."""

from __future__ import annotations

import os

import onnx
import tvm

from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.importer.onnx_import import ImportedModel, import_onnx
from tvm_intsmooth.importer.relax_import import import_relax

ModelLike = str | os.PathLike | onnx.ModelProto | ImportedModel | tvm.IRModule


def import_model(model: ModelLike) -> ImportedModel:
    """An ONNX path or ``onnx.ModelProto`` (through :func:`import_onnx`), a float Relax module
    from TVM's frontends (through :func:`import_relax`), or an :class:`ImportedModel` as is."""
    if isinstance(model, ImportedModel):
        return model
    if isinstance(model, tvm.IRModule):
        return import_relax(model)
    if isinstance(model, str | os.PathLike | onnx.ModelProto):
        return import_onnx(model)
    raise IntSmoothError(
        f"model of type {type(model).__name__}: expected an ONNX file path, an onnx.ModelProto, "
        "a float Relax IRModule (tvm.relax.frontend.onnx.from_onnx or "
        "tvm.relax.frontend.torch.from_exported_program) or an ImportedModel."
    )
