"""Runtime: running compiled classifiers and smoothed classifiers on the host."""

from tvm_intsmooth import tvm_hooks

from .classifier import CompiledClassifier, float_inputs
from .float_smoothed import FloatSmoothedClassifier
from .smoothed_classifier import SmoothedClassifier, save_artifact

__all__ = [
    "CompiledClassifier",
    "FloatSmoothedClassifier",
    "SmoothedClassifier",
    "float_inputs",
    "save_artifact",
]

tvm_hooks.register()
