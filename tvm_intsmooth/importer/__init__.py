"""Import: ONNX image classifiers into float Relax modules."""

from .onnx_import import SUPPORTED_OPS, ImportedModel, import_onnx

__all__ = ["SUPPORTED_OPS", "ImportedModel", "import_onnx"]
