"""Runtime: running compiled classifiers and smoothed classifiers on the host; artifact folders.

Every smoothed classifier (:class:`SmoothedClassifier`, :class:`FloatSmoothedClassifier`, and
``tvm_intsmooth.remote.RemoteCertifier``) is a :class:`BaseSmoothedClassifier`: ``counts``, and
CERTIFY and PREDICT on them. An artifact folder is written by :func:`save_artifact` and loaded
by :func:`load_artifact`; its meta.json is an :class:`ArtifactMeta`.
"""

from tvm_intsmooth.runtime.artifact import ArtifactMeta
from tvm_intsmooth.runtime.base import BaseSmoothedClassifier, CertifyJob
from tvm_intsmooth.runtime.classifier import CompiledClassifier, float_inputs
from tvm_intsmooth.runtime.float_smoothed import FloatSmoothedClassifier
from tvm_intsmooth.runtime.smoothed_classifier import (
    SmoothedClassifier,
    load_artifact,
    save_artifact,
)

__all__ = [
    "ArtifactMeta",
    "BaseSmoothedClassifier",
    "CertifyJob",
    "CompiledClassifier",
    "FloatSmoothedClassifier",
    "SmoothedClassifier",
    "float_inputs",
    "load_artifact",
    "save_artifact",
]
