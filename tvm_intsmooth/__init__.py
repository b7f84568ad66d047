"""tvm_intsmooth: integer-arithmetic-only randomized smoothing for ONNX classifiers, on Apache TVM.

The public API, as ``import tvm_intsmooth as tis``::

    smoothed = tis.smooth("model.onnx", calibration_images, sigma=0.25)   # quantize+noise+votes
    clf = tis.SmoothedClassifier.from_model(smoothed)                     # build for this CPU
    cert = clf.certify(x, n0=100, n=100_000, alpha=0.001, index=0, seed=2026)
    label = clf.predict(x, n=1000, alpha=0.001, index=0, seed=2026)

- ``tis.import_onnx``, ``tis.quantize_static``, ``tis.smooth``: ONNX (a path, a ModelProto, or a
  float Relax module from TVM's own frontends) to an integer smoothed classifier;
- the passes ``tis.QuantizeToInteger``, ``tis.InjectIntegerNoise``, ``tis.CountVotes`` for a
  pipeline of your own; ``tis.build`` and ``tis.check_integer_only``;
- ``tis.SmoothedClassifier`` (compiled artifact: ``counts``, ``certify``, ``predict``),
  ``tis.save_artifact``, ``tis.FloatSmoothedClassifier`` (the float reference);
- ``tis.certify``: the subpackage of pure statistics (Cohen et al.'s CERTIFY and PREDICT from vote
  counts, results files, reports), which needs no TVM.

The names are loaded on first use, so that ``import tvm_intsmooth`` and the statistics do not
import TVM.
"""

from __future__ import annotations

import importlib

from . import tvm_hooks  # light: it imports TVM only once TVM is there

__version__ = "0.1.0"

_EXPORTS = {
    "import_onnx": "tvm_intsmooth.importer",
    "ImportedModel": "tvm_intsmooth.importer",
    "quantize_static": "tvm_intsmooth.quantize",
    "QuantizedModel": "tvm_intsmooth.quantize",
    "CalibrationReader": "tvm_intsmooth.quantize",
    "QuantizeToInteger": "tvm_intsmooth.quantize",
    "smooth": "tvm_intsmooth.smoothing.api",
    "SmoothedModel": "tvm_intsmooth.smoothing.api",
    "InjectIntegerNoise": "tvm_intsmooth.smoothing.inject_integer_noise",
    "CountVotes": "tvm_intsmooth.smoothing.count_votes",
    "check_integer_only": "tvm_intsmooth.analysis",
    "build": "tvm_intsmooth.schedule",
    "resolve_target": "tvm_intsmooth.schedule",
    "SmoothedClassifier": "tvm_intsmooth.runtime",
    "FloatSmoothedClassifier": "tvm_intsmooth.runtime",
    "save_artifact": "tvm_intsmooth.runtime",
    "IntSmoothError": "tvm_intsmooth.errors",
}

_SUBPACKAGES = ("certify",)  # tis.certify: the statistics, a subpackage without TVM

__all__ = sorted([*_EXPORTS, *_SUBPACKAGES])


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"tvm_intsmooth.{name}")
    raise AttributeError(f"module 'tvm_intsmooth' has no attribute {name!r}")


tvm_hooks.register_now_or_when_tvm_loads()  # for tvm.relax.get_pipeline("intsmooth")
