"""Import: ONNX image classifiers into float Relax modules."""

from tvm_intsmooth import tvm_hooks

from .import_model import ModelLike, import_model
from .onnx_import import SUPPORTED_OPS, ImportedModel, import_onnx
from .relax_import import import_relax

__all__ = [
    "SUPPORTED_OPS",
    "ImportedModel",
    "ModelLike",
    "import_model",
    "import_onnx",
    "import_relax",
]

tvm_hooks.register()
