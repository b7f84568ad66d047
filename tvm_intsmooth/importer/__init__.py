"""Import: ONNX image classifiers into float Relax modules."""

from tvm_intsmooth.importer.import_model import ModelLike, import_model
from tvm_intsmooth.importer.onnx_import import SUPPORTED_OPS, ImportedModel, import_onnx
from tvm_intsmooth.importer.relax_import import import_relax

__all__ = [
    "SUPPORTED_OPS",
    "ImportedModel",
    "ModelLike",
    "import_model",
    "import_onnx",
    "import_relax",
]
