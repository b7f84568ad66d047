"""The compiler: calibration, the phases in order (:mod:`.phases`, the one place that lists them)
and the entry points that run them: ``quantize_static``, ``smooth``, ``build``/``export``/``load``,
``tune`` and the registered Relax pipeline ``"intsmooth"`` (:class:`IntSmoothPipeline`)."""

from tvm_intsmooth.pipeline.build import build, export, load, lower
from tvm_intsmooth.pipeline.calibrate import Calibration, CalibrationReader, calibrate
from tvm_intsmooth.pipeline.canonicalize import canonical_model
from tvm_intsmooth.pipeline.phases import PHASES, Phase
from tvm_intsmooth.pipeline.quantize import QuantizedModel, quantize_static
from tvm_intsmooth.pipeline.relax_pipeline import IntSmoothPipeline
from tvm_intsmooth.pipeline.smooth import SmoothedModel, smooth

__all__ = [
    "PHASES",
    "Calibration",
    "CalibrationReader",
    "IntSmoothPipeline",
    "Phase",
    "QuantizedModel",
    "SmoothedModel",
    "build",
    "calibrate",
    "canonical_model",
    "export",
    "load",
    "lower",
    "quantize_static",
    "smooth",
]
