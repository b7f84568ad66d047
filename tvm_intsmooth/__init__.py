"""tvm_intsmooth: integer-arithmetic-only randomized smoothing for ONNX classifiers, on Apache TVM.

Pipeline (one subpackage per stage): ``importer`` (ONNX -> float Relax), ``quantize`` (calibration
and the QuantizeToInteger pass), ``smooth`` (integer noise and vote counting), ``build`` (targets,
compilation), ``runtime`` (running compiled artifacts), ``certify`` (Cohen et al.'s certificates
from vote counts), ``cli`` (the ``intsmooth`` command).

The names below are loaded on first use, so that for example ``tvm_intsmooth.certify`` works
without importing TVM.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "import_onnx": "tvm_intsmooth.importer",
    "ImportedModel": "tvm_intsmooth.importer",
    "QuantizeToInteger": "tvm_intsmooth.quantize",
    "QuantizedModel": "tvm_intsmooth.quantize",
    "quantize_static": "tvm_intsmooth.quantize",
    "CalibrationReader": "tvm_intsmooth.quantize",
    "check_integer_only": "tvm_intsmooth.analysis",
    "build": "tvm_intsmooth.schedule",
    "resolve_target": "tvm_intsmooth.schedule",
    "interpret": "tvm_intsmooth.reference",
    "IntSmoothError": "tvm_intsmooth.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tvm_intsmooth' has no attribute {name!r}")
