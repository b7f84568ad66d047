"""Quantize: calibration and the QuantizeToInteger pass (float Relax -> integer-only Relax)."""

from tvm_intsmooth import tvm_hooks

from .api import QuantizedModel, check_images, quantize_static
from .calibrate import CalibrationReader, collect_ranges
from .quantize_to_integer import QuantizeToInteger

__all__ = [
    "CalibrationReader",
    "QuantizeToInteger",
    "QuantizedModel",
    "check_images",
    "collect_ranges",
    "quantize_static",
]

tvm_hooks.register()
