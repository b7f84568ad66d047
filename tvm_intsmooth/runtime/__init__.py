"""Runtime: running compiled classifiers and smoothed classifiers on the host."""

from .classifier import CompiledClassifier, float_inputs

__all__ = ["CompiledClassifier", "float_inputs"]
