"""``smooth``: float classifier -> integer smoothed classifier (quantize + noise + votes)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import onnx
import tvm

from ..analysis import DumpIR, with_dumps
from ..errors import IntSmoothError
from ..importer import ModelLike, import_model
from ..quantize import QuantizedModel, check_images, quantize_static
from ..quantize.calibrate import CalibrationReader
from .artifact_facts import ArtifactFacts, add_artifact_facts
from .count_votes import CountVotes
from .inject_integer_noise import InjectIntegerNoise
from .noise_sampler import sample_noise_numpy
from .noise_table import NoiseTable

# Calibration noise only sets activation ranges, so a fixed seed keeps compiles reproducible.
# Its streams start at 3 * 2^62, a range that CERTIFY and PREDICT never draw (their streams stay
# below 2^63 + 2^62, runtime/cohen_procedures.py), so no seed reproduces the noise the base
# classifier was calibrated on.
CALIBRATION_SEED = 0x1C0FFEE
CALIBRATION_STREAM_BASE = 3 * 2**62


def calibration_stream(batch_number: int) -> int:
    """The noise stream of calibration batch ``batch_number`` (from 3 * 2^62 on)."""
    if not 0 <= batch_number < 2**62:
        raise IntSmoothError(f"calibration batch number {batch_number} is out of range")
    return CALIBRATION_STREAM_BASE + batch_number


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
    return apply_smoothing(model, calibration_images, noise, dump_ir=dump_ir)


def apply_smoothing(
    model: ModelLike,
    calibration_images: np.ndarray | Iterable[np.ndarray],
    noise: InjectIntegerNoise,
    *,
    dump_ir: str | os.PathLike | None = None,
) -> SmoothedModel:
    """The phases of :func:`smooth` with a given noise pass: calibrate on noisy copies, then
    QuantizeToInteger, ``noise``, CountVotes (dumped as 00_float .. 03_count_votes)."""
    imported = import_model(model)
    noisy = noisy_calibration(calibration_images, imported.input_shape, noise.table, noise.clip)
    quantized = quantize_static(imported, noisy, input_dtype="int16")
    if dump_ir is not None:
        DumpIR(dump_ir, 0, "float")(imported.mod)
        DumpIR(dump_ir, 1, "quantize_to_integer")(quantized.mod)
    phases = [("inject_integer_noise", noise), ("count_votes", CountVotes())]
    mod = tvm.transform.Sequential(with_dumps(phases, dump_ir, first_index=2))(quantized.mod)
    facts = ArtifactFacts.of(
        noise.table, noise.batch, noise.clip, imported.input_shape, imported.num_classes
    )
    mod = add_artifact_facts(mod, facts)  # checked when an artifact is loaded
    return SmoothedModel(mod, quantized, noise.table, noise.batch, noise.clip, imported.onnx_model)


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
    sampler (a fixed seed, calibration streams), so compiling twice gives the same artifact.
    """
    if isinstance(images, np.ndarray):  # checked now, not when calibration reaches it
        check_images(images, input_shape, "calibration data")
        images = CalibrationReader(images, batch_size)
    coords = int(np.prod(input_shape))

    def batches() -> Iterator[np.ndarray]:
        for number, batch in enumerate(images):
            batch = check_images(np.asarray(batch), input_shape, f"calibration batch {number}")
            stream = calibration_stream(number)
            noise = sample_noise_numpy(table, CALIBRATION_SEED, stream, 0, len(batch), coords)
            noisy = batch.astype(np.int16) + noise.reshape(batch.shape)
            yield np.clip(noisy, 0, 255) if clip == "clip" else noisy

    return batches()
