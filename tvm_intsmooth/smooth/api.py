"""``smooth``: ONNX classifier -> integer smoothed classifier (quantize + noise + votes)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import onnx
import tvm

from ..importer import ImportedModel, import_onnx
from ..pipeline import smoothing_pipeline
from ..quantize import QuantizedModel, quantize_static
from .noise_table import NoiseTable


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
    clip: str = "clip",
    bits: int = 64,
    dump_ir: str | os.PathLike | None = None,
) -> SmoothedModel:
    """Quantize ``model`` and insert integer noise and vote counting (DESIGN.md sections 2-5).

    Args:
        model: ONNX file or proto (float pixels in [0, 1]), or an :class:`ImportedModel`.
        calibration_images: uint8 N x C x H x W images for the activation ranges.
        sigma: noise level in [0, 1] pixel units.
        batch: noisy samples per call of the compiled function.
        clip: "clip" (noisy pixels clamped to 0..255) or "none".
        bits: uniform width of the noise sampler (64 or 32).
        dump_ir: folder to write the IR after each phase to, for inspection.
    """
    imported = model if isinstance(model, ImportedModel) else import_onnx(model)
    quantized = quantize_static(imported, calibration_images, input_dtype="int16")
    seq, table = smoothing_pipeline(sigma, batch, clip=clip, bits=bits, dump_ir=dump_ir)
    mod = seq(quantized.mod)
    return SmoothedModel(mod, quantized, table, batch, clip, imported.onnx_model)
