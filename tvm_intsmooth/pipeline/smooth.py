"""``smooth``: float classifier -> integer smoothed classifier (quantize + noise + votes)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import onnx
import tvm

from tvm_intsmooth.importer import ModelLike
from tvm_intsmooth.pipeline.calibrate import Calibration, calibrate
from tvm_intsmooth.pipeline.canonicalize import canonical_model
from tvm_intsmooth.pipeline.phases import compose, smoothing_phases
from tvm_intsmooth.pipeline.quantize import QuantizedModel, quantize_calibrated
from tvm_intsmooth.smoothing.artifact_facts import ArtifactFacts
from tvm_intsmooth.smoothing.noise_table import NoiseTable
from tvm_intsmooth.transform.inject_integer_noise import InjectIntegerNoise


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
    model: ModelLike,
    calibration_images: np.ndarray | Iterable[np.ndarray],
    sigma: float,
    *,
    batch: int = 100,
    clip: str = "none",
    bits: int = 64,
    dump_ir: str | os.PathLike | None = None,
) -> SmoothedModel:
    """Quantize ``model`` to integers and insert integer noise and vote counting.

    Args:
        model: an ONNX file or ``onnx.ModelProto`` taking float pixels in [0, 1], a float Relax
            module from TVM's frontends (``tvm.relax.frontend.onnx.from_onnx(...,
            keep_params_in_input=False)`` or ``tvm.relax.frontend.torch.from_exported_program``),
            or an :class:`ImportedModel`.
        calibration_images: uint8 N x C x H x W images (or an iterable of such batches). The
            activation ranges are measured on one noisy copy of each, drawn from the same
            rounded Gaussian (and clip policy) the compiled classifier will see.
        sigma: noise level in [0, 1] pixel units.
        batch: noisy samples per call of the compiled function.
        clip: "none" (noisy pixels passed on unclipped, as in Cohen et al. and noise-augmented
            training) or "clip" (clamped to 0..255).
        bits: uniform width of the noise sampler (64 or 32).
        dump_ir: folder to write the IR after each phase to, for inspection.

    Returns:
        A :class:`SmoothedModel`; compile it with ``SmoothedClassifier.from_model`` or
        ``save_artifact``.
    """
    noise = InjectIntegerNoise(sigma, batch, clip=clip, bits=bits)
    imported = canonical_model(model)
    calibration = calibrate(imported, calibration_images, sigma=sigma, bits=bits, clip=clip)
    return smooth_calibrated(imported, calibration, noise, dump_ir=dump_ir)


def smooth_calibrated(
    model: ModelLike,
    calibration: Calibration,
    noise: InjectIntegerNoise,
    *,
    dump_ir: str | os.PathLike | None = None,
) -> SmoothedModel:
    """The phases from ``float`` to ``artifact_facts`` with a given noise pass, on ranges that
    :func:`~tvm_intsmooth.calibrate` measured under the same noise."""
    calibration.check_noise(noise.table.sigma, noise.table.bits, noise.clip)
    imported = canonical_model(model)
    quantized = quantize_calibrated(imported, calibration, "int16", dump_ir)
    facts = ArtifactFacts.of(
        noise.table, noise.batch, noise.clip, imported.input_shape, imported.num_classes
    )
    mod = compose(smoothing_phases(noise, facts), dump_ir)(quantized.mod)
    return SmoothedModel(mod, quantized, noise.table, noise.batch, noise.clip, imported.onnx_model)
