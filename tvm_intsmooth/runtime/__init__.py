"""Runtime: running compiled classifiers and smoothed classifiers on the host."""

from .classifier import CompiledClassifier, float_inputs
from .smoothed_classifier import SmoothedClassifier, save_artifact

__all__ = ["CompiledClassifier", "SmoothedClassifier", "float_inputs", "save_artifact"]
