"""Floating-point reference smoothing: the same ONNX model, continuous Gaussian noise, float32.

This is the baseline the seed paper compares with (Cohen et al.'s smoothing): x/255 + N(0, sigma^2)
per pixel, onnxruntime float inference, argmax votes. Noisy pixels are left unclipped, as in Cohen
et al., unless ``clip="clip"`` clamps them to [0, 1], which mirrors an integer artifact compiled
with that policy. Its noise is numpy's Philox stream keyed by (seed, stream), so runs are
replayable; it has no sampler TV bound to subtract.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx

from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.importer import import_onnx
from tvm_intsmooth.runtime.artifact import ONNX_FILE, ArtifactMeta
from tvm_intsmooth.runtime.base import BaseSmoothedClassifier, check_u64
from tvm_intsmooth.transform.inject_integer_noise import CLIP_POLICIES


class FloatSmoothedClassifier(BaseSmoothedClassifier):
    """The float model under continuous Gaussian noise (onnxruntime): vote counts, CERTIFY and
    PREDICT on the same streams as the integer :class:`SmoothedClassifier`."""

    tv_bound = 0.0

    def __init__(
        self,
        model: str | os.PathLike | onnx.ModelProto,
        sigma: float,
        batch: int = 100,
        threads: int | None = None,
        clip: str = "none",
    ):
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise IntSmoothError(
                f"the float reference needs onnxruntime, which cannot be imported ({err}); "
                "install it (pip install onnxruntime) or leave out --float"
            ) from None

        if not sigma > 0:
            raise IntSmoothError(f"sigma must be > 0, got {sigma}")
        if clip not in CLIP_POLICIES:
            raise IntSmoothError(f"clip policy {clip!r}: use one of {CLIP_POLICIES}")
        imported = import_onnx(model)  # validates the model and gives its shapes
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(imported.onnx_model.SerializeToString(), options)
        self.input_name = imported.input_name
        self.input_shape = imported.input_shape
        self.num_classes = imported.num_classes
        self.sigma = float(sigma)
        self.batch = batch
        self.clip = clip

    @classmethod
    def from_artifact(cls, path: str | os.PathLike) -> FloatSmoothedClassifier:
        """The float reference of an artifact folder: its model.onnx with its sigma, batch and
        clip policy."""
        meta = ArtifactMeta.from_file(path)
        model = Path(path) / ONNX_FILE
        if not model.is_file():
            raise IntSmoothError(f"artifact {path} has no model.onnx for the float reference")
        return cls(model, meta.sigma, batch=meta.batch, clip=meta.clip)

    def counts(
        self, x: np.ndarray, n: int, seed: int, stream: int = 0, progress: bool | None = None
    ) -> np.ndarray:
        """Vote counts (int64 [K]) of n noisy float samples from the (seed, stream) generator."""
        pixels = self.check_image(x).astype(np.float32) / np.float32(255)
        self.check_n(n)
        rng = np.random.Generator(
            # A uint64 array: a Python list of ints >= 2^63 goes through float64 and collides.
            np.random.Philox(
                key=np.array([check_u64(seed, "seed"), check_u64(stream, "stream")], np.uint64)
            )
        )
        total = np.zeros(self.num_classes, np.int64)
        for offset in range(0, n, self.batch):
            size = min(self.batch, n - offset)
            noise = rng.standard_normal((size, *self.input_shape), dtype=np.float32)
            batch = pixels + np.float32(self.sigma) * noise
            if self.clip == "clip":
                np.clip(batch, 0, 1, out=batch)
            logits = self.session.run(None, {self.input_name: batch})[0]
            total += np.bincount(logits.argmax(1), minlength=self.num_classes)
        return total
