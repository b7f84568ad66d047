"""Import: ONNX (pre-scan, then TVM's from_onnx), PyTorch (from_exported_program) and float
Relax modules, checked for the integer pipeline."""

from tvm_intsmooth.importer.import_model import ModelLike, import_model
from tvm_intsmooth.importer.imported_model import ImportedModel
from tvm_intsmooth.importer.onnx_import import SUPPORTED_OPS, import_onnx
from tvm_intsmooth.importer.relax_import import (
    check_canonical,
    import_exported_program,
    import_relax,
)

__all__ = [
    "SUPPORTED_OPS",
    "ImportedModel",
    "ModelLike",
    "check_canonical",
    "import_exported_program",
    "import_model",
    "import_onnx",
    "import_relax",
]
