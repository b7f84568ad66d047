"""Floating-point reference smoothing: the same ONNX model, continuous Gaussian noise, float32.

This is the baseline the seed paper compares with (Cohen et al.'s smoothing): x/255 + N(0, sigma^2)
per pixel, onnxruntime float inference, argmax votes. Noisy pixels are left unclipped, as in Cohen
et al., unless ``clip="clip"`` clamps them to [0, 1], which mirrors an integer artifact compiled
with that policy. Its noise is numpy's Philox stream keyed by (seed, stream), so runs are
replayable; it has no sampler TV bound to subtract. Sample i is the i-th image-sized block of
that stream's normals, whatever the batch size; a range of samples that does not start where the
previous call ended is reached by drawing (and discarding) the noise before it.
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


def _physical_cores() -> int:
    from tvm_intsmooth.compat import physical_cores

    return physical_cores()


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
        # ONNX Runtime's default is one thread per physical core
        self.threads = int(threads) if threads else _physical_cores()
        self.session = ort.InferenceSession(imported.onnx_model.SerializeToString(), options)
        self.input_name = imported.input_name
        self.input_shape = imported.input_shape
        self.num_classes = imported.num_classes
        self.sigma = float(sigma)
        self.batch = batch
        self.clip = clip
        # (seed, stream, next sample index, generator positioned there) after the last counts
        self._cursor: tuple[int, int, int, np.random.Generator] | None = None

    @classmethod
    def from_artifact(
        cls, path: str | os.PathLike, threads: int | None = None
    ) -> FloatSmoothedClassifier:
        """The float reference of an artifact folder: its model.onnx with its sigma, batch and
        clip policy (``threads``: onnxruntime's, default one per physical core). The model is
        parsed from the bytes whose SHA-256 was checked against meta.json's."""
        meta = ArtifactMeta.from_file(path)
        if not (Path(path) / ONNX_FILE).is_file():
            raise IntSmoothError(f"artifact {path} has no model.onnx for the float reference")
        model = onnx.load_from_string(meta.read_onnx(path))
        return cls(model, meta.sigma, batch=meta.batch, threads=threads, clip=meta.clip)

    def _generator(self, seed: int, stream: int, start: int) -> np.random.Generator:
        """The (seed, stream) generator positioned at sample ``start``: the last call's when it
        ended there, else a fresh one with the noise of samples 0..start-1 drawn and dropped."""
        cursor, self._cursor = self._cursor, None
        if cursor is not None and cursor[:3] == (seed, stream, start):
            return cursor[3]
        rng = np.random.Generator(
            # A uint64 array: a Python list of ints >= 2^63 goes through float64 and collides.
            np.random.Philox(key=np.array([seed, stream], np.uint64))
        )
        for offset in range(0, start, self.batch):
            rng.standard_normal((min(self.batch, start - offset), *self.input_shape), np.float32)
        return rng

    def counts(
        self,
        x: np.ndarray,
        n: int,
        seed: int,
        stream: int = 0,
        progress: bool | None = None,
        *,
        start: int = 0,
    ) -> np.ndarray:
        """Vote counts (int64 [K]) of noisy float samples start..start+n-1 of the (seed, stream)
        generator (the same for every batch size)."""
        pixels = self.check_image(x).astype(np.float32) / np.float32(255)
        self.check_n(n, start)
        seed, stream, start = check_u64(seed, "seed"), check_u64(stream, "stream"), int(start)
        rng = self._generator(seed, stream, start)
        total = np.zeros(self.num_classes, np.int64)
        for offset in range(0, n, self.batch):
            size = min(self.batch, n - offset)
            noise = rng.standard_normal((size, *self.input_shape), dtype=np.float32)
            batch = pixels + np.float32(self.sigma) * noise
            if self.clip == "clip":
                np.clip(batch, 0, 1, out=batch)
            logits = self.session.run(None, {self.input_name: batch})[0]
            total += np.bincount(logits.argmax(1), minlength=self.num_classes)
        self._cursor = (seed, stream, start + n, rng)
        return total
