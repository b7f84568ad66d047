"""``smooth``: ONNX classifier -> integer smoothed classifier (quantize + noise + votes)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import onnx
import tvm

from ..importer import ImportedModel, import_onnx
from ..pipeline import smoothing_pipeline
from ..quantize import QuantizedModel, check_images, quantize_static
from ..quantize.calibrate import CalibrationReader
from .noise_sampler import sample_noise_numpy
from .noise_table import NoiseTable

# Calibration noise only sets activation ranges, so a fixed seed keeps compiles reproducible
# without weakening anything; certification never uses it.
CALIBRATION_SEED = 0x1C0FFEE


@dataclass
class SmoothedModel:
    """``mod["main"](pixels, seed, counter, valid) -> int32 votes`` and what certifying needs."""

    mod: tvm.IRModule
    quantized: QuantizedModel  # the int16-input base classifier
    table: NoiseTable
    batch: int
    clip: str
    onnx_model: onnx.ModelProto | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.quantized.input_shape

    @property
    def num_classes(self) -> int:
        return self.quantized.num_classes

    @property
    def tv_bound(self) -> float:
        """Total-variation distance bound between the drawn and the exact noise, per sample."""
        return self.table.tv_bound(int(np.prod(self.input_shape)))

    def metadata(self) -> dict:
        return {
            "sigma": self.table.sigma,
            "noise": "rounded_gaussian",
            "bits": self.table.bits,
            "K": self.table.K,
            "tv_bound": self.tv_bound,
            "batch": self.batch,
            "clip": self.clip,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "source": self.quantized.source,
        }


def smooth(
    model: str | os.PathLike | onnx.ModelProto | ImportedModel,
    calibration_images: np.ndarray | Iterable[np.ndarray],
    sigma: float,
    *,
    batch: int = 100,
    clip: str = "none",
    bits: int = 64,
    dump_ir: str | os.PathLike | None = None,
) -> SmoothedModel:
    """Quantize ``model`` and insert integer noise and vote counting (DESIGN.md sections 2-5).

    Args:
        model: ONNX file or proto (float pixels in [0, 1]), or an :class:`ImportedModel`.
        calibration_images: uint8 N x C x H x W images (or an iterable of such batches). The
            activation ranges are measured on one noisy copy of each, drawn from the same
            rounded Gaussian (and clip policy) the compiled classifier will see.
        sigma: noise level in [0, 1] pixel units.
        batch: noisy samples per call of the compiled function.
        clip: "none" (noisy pixels passed on unclipped, as in Cohen et al. and noise-augmented
            training) or "clip" (clamped to 0..255).
        bits: uniform width of the noise sampler (64 or 32).
        dump_ir: folder to write the IR after each phase to, for inspection.
    """
    imported = model if isinstance(model, ImportedModel) else import_onnx(model)
    seq, table = smoothing_pipeline(sigma, batch, clip=clip, bits=bits, dump_ir=dump_ir)
    noisy = noisy_calibration(calibration_images, imported.input_shape, table, clip)
    quantized = quantize_static(imported, noisy, input_dtype="int16")
    mod = seq(quantized.mod)
    return SmoothedModel(mod, quantized, table, batch, clip, imported.onnx_model)


def noisy_calibration(
    images: np.ndarray | Iterable[np.ndarray],
    input_shape: tuple[int, ...],
    table: NoiseTable,
    clip: str,
    batch_size: int = 64,
) -> Iterable[np.ndarray]:
    """Calibration batches as the smoothed classifier's base model sees them: int16 images plus
    rounded Gaussian noise (clamped to 0..255 when ``clip == "clip"``), one copy per image.

    Ranges measured on clean images saturate under noise; these are drawn from the deployed
    sampler (stream = batch number, fixed seed), so compiling twice gives the same artifact.
    """
    if isinstance(images, np.ndarray):  # checked now, not when calibration reaches it
        check_images(images, input_shape, "calibration data")
        images = CalibrationReader(images, batch_size)
    coords = int(np.prod(input_shape))

    def batches() -> Iterator[np.ndarray]:
        for number, batch in enumerate(images):
            batch = check_images(np.asarray(batch), input_shape, f"calibration batch {number}")
            noise = sample_noise_numpy(table, CALIBRATION_SEED, number, 0, len(batch), coords)
            noisy = batch.astype(np.int16) + noise.reshape(batch.shape)
            yield np.clip(noisy, 0, 255) if clip == "clip" else noisy

    return batches()
