"""tvm_intsmooth: integer-arithmetic-only randomized smoothing for ONNX classifiers, on Apache TVM.

The public API, as ``import tvm_intsmooth as tis``::

    smoothed = tis.smooth("model.onnx", calibration_images, sigma=0.25)   # quantize+noise+votes
    clf = tis.SmoothedClassifier.from_model(smoothed)                     # build for this CPU
    cert = clf.certify(x, n0=100, n=100_000, alpha=0.001, index=0, seed=2026)
    label = clf.predict(x, n=1000, alpha=0.001, index=0, seed=2026)

- ``tis.import_onnx``, ``tis.calibrate``, ``tis.quantize_static``, ``tis.smooth``: ONNX (a path,
  a ModelProto, or a float Relax module from TVM's own frontends) to an integer smoothed
  classifier; ``tis.build`` and ``tis.check_integer_only``;
- ``tis.transform``: every pass (``QuantizeToInteger``, ``InjectIntegerNoise``, ``CountVotes``,
  ...), for a pipeline of your own; the headline passes are also top-level names;
  ``tis.IntSmoothPipeline`` is what ``tvm.relax.get_pipeline("intsmooth", ...)`` returns;
- ``tis.SmoothedClassifier`` (compiled artifact: ``counts``, ``certify``, ``predict``),
  ``tis.save_artifact`` / ``tis.load_artifact``, ``tis.FloatSmoothedClassifier`` (the float
  reference);
- ``tis.certify``: the subpackage of pure statistics (Cohen et al.'s CERTIFY and PREDICT from vote
  counts, results files, reports), which needs no TVM;
- errors: ``tis.IntSmoothError`` and its kinds ``tis.UnsupportedModelError``, ``tis.DataError``.

The names are loaded on first use, so that ``import tvm_intsmooth`` and the statistics do not
import TVM; ``dir(tis)`` lists them all, and type checkers see them through the imports below.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from tvm_intsmooth import compat, registration

__version__ = "0.1.0"

_EXPORTS = {
    "import_onnx": "tvm_intsmooth.importer",
    "ImportedModel": "tvm_intsmooth.importer",
    "calibrate": "tvm_intsmooth.pipeline",
    "Calibration": "tvm_intsmooth.pipeline",
    "CalibrationReader": "tvm_intsmooth.pipeline",
    "quantize_static": "tvm_intsmooth.pipeline",
    "QuantizedModel": "tvm_intsmooth.pipeline",
    "smooth": "tvm_intsmooth.pipeline",
    "SmoothedModel": "tvm_intsmooth.pipeline",
    "build": "tvm_intsmooth.pipeline",
    "IntSmoothPipeline": "tvm_intsmooth.pipeline",
    "QuantizeToInteger": "tvm_intsmooth.transform",
    "InjectIntegerNoise": "tvm_intsmooth.transform",
    "CountVotes": "tvm_intsmooth.transform",
    "check_integer_only": "tvm_intsmooth.analysis",
    "resolve_target": "tvm_intsmooth.schedule",
    "SmoothedClassifier": "tvm_intsmooth.runtime",
    "FloatSmoothedClassifier": "tvm_intsmooth.runtime",
    "save_artifact": "tvm_intsmooth.runtime",
    "load_artifact": "tvm_intsmooth.runtime",
    "IntSmoothError": "tvm_intsmooth.errors",
    "UnsupportedModelError": "tvm_intsmooth.errors",
    "DataError": "tvm_intsmooth.errors",
}

_SUBPACKAGES = ("certify", "transform")  # tis.certify needs no TVM

__all__ = [
    "Calibration",
    "CalibrationReader",
    "CountVotes",
    "DataError",
    "FloatSmoothedClassifier",
    "ImportedModel",
    "InjectIntegerNoise",
    "IntSmoothError",
    "IntSmoothPipeline",
    "QuantizeToInteger",
    "QuantizedModel",
    "SmoothedClassifier",
    "SmoothedModel",
    "UnsupportedModelError",
    "build",
    "calibrate",
    "certify",
    "check_integer_only",
    "import_onnx",
    "load_artifact",
    "quantize_static",
    "resolve_target",
    "save_artifact",
    "smooth",
    "transform",
]

if TYPE_CHECKING:
    from tvm_intsmooth import certify, transform
    from tvm_intsmooth.analysis import check_integer_only
    from tvm_intsmooth.errors import DataError, IntSmoothError, UnsupportedModelError
    from tvm_intsmooth.importer import ImportedModel, import_onnx
    from tvm_intsmooth.pipeline import (
        Calibration,
        CalibrationReader,
        IntSmoothPipeline,
        QuantizedModel,
        SmoothedModel,
        build,
        calibrate,
        quantize_static,
        smooth,
    )
    from tvm_intsmooth.runtime import (
        FloatSmoothedClassifier,
        SmoothedClassifier,
        load_artifact,
        save_artifact,
    )
    from tvm_intsmooth.schedule import resolve_target
    from tvm_intsmooth.transform import CountVotes, InjectIntegerNoise, QuantizeToInteger


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"tvm_intsmooth.{name}")
    raise AttributeError(f"module 'tvm_intsmooth' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


compat.use_all_cores()  # before TVM makes its thread pool: one thread per physical core
registration.register_now_or_when_tvm_loads()  # for tvm.relax.get_pipeline("intsmooth")
