"""One entry for every kind of model the pipeline accepts."""

from __future__ import annotations

import os

import onnx
import tvm

from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.importer.imported_model import ImportedModel
from tvm_intsmooth.importer.onnx_import import import_onnx
from tvm_intsmooth.importer.relax_import import import_exported_program, import_relax

ModelLike = str | os.PathLike | onnx.ModelProto | ImportedModel | tvm.IRModule


def _is_exported_program(model) -> bool:
    """A ``torch.export.ExportedProgram``, recognized without importing torch."""
    return any(
        cls.__name__ == "ExportedProgram" and cls.__module__.startswith("torch.export")
        for cls in type(model).__mro__
    )


def import_model(model: ModelLike) -> ImportedModel:
    """An ONNX path or ``onnx.ModelProto`` (pre-scan, then TVM's ``from_onnx``), a
    ``torch.export.ExportedProgram`` (TVM's ``from_exported_program``), a float Relax module
    from TVM's frontends, or an :class:`ImportedModel` as is. The result is the frontend's
    module; the pipeline canonicalizes it."""
    if isinstance(model, ImportedModel):
        return model
    if isinstance(model, tvm.IRModule):
        return import_relax(model)
    if isinstance(model, str | os.PathLike | onnx.ModelProto):
        return import_onnx(model)
    if _is_exported_program(model):
        return import_exported_program(model)
    raise IntSmoothError(
        f"model of type {type(model).__name__}: expected an ONNX file path, an onnx.ModelProto, "
        "a torch.export.ExportedProgram, a float Relax IRModule "
        "(tvm.relax.frontend.onnx.from_onnx or tvm.relax.frontend.torch.from_exported_program) "
        "or an ImportedModel."
    )
