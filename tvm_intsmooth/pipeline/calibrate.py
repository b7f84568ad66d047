"""Calibration: the activation ranges of the float model on representative inputs.

Kept apart from the graph rewrite (as ONNX Runtime's quantization tool does), and run before the
passes: :func:`calibrate` runs the float module, instrumented to return every float intermediate,
over a calibration set (clean, or noisy copies drawn from the deployed sampler) and records
max |value| per Relax variable in a :class:`Calibration`; ``QuantizeToInteger`` only reads it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax

from tvm_intsmooth.data.images import check_images
from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.importer import ModelLike
from tvm_intsmooth.pipeline.build import build
from tvm_intsmooth.pipeline.canonicalize import canonical_model
from tvm_intsmooth.quantize.graph import dataflow_bindings, replace_function
from tvm_intsmooth.smoothing.noise_sampler import sample_noise_numpy
from tvm_intsmooth.smoothing.noise_table import NoiseTable, rounded_gaussian_table

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


class CalibrationReader:
    """Batches of integer pixel images (uint8, N x C x H x W) for calibration."""

    def __init__(self, images: np.ndarray, batch_size: int = 64):
        self.images = images
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[np.ndarray]:
        for start in range(0, len(self.images), self.batch_size):
            yield self.images[start : start + self.batch_size]


def instrument(func: relax.Function) -> tuple[relax.Function, list[str]]:
    """The function made to return all its float intermediates (a tuple), and their names."""
    block = func.body.blocks[0]
    taps = [
        var
        for var, _ in dataflow_bindings(func)
        if isinstance(var.ty, relax.TensorType) and "float" in str(var.ty.dtype)
    ]
    out = relax.Var("calibration_taps", relax.TupleType([v.ty for v in taps]))
    bindings = [*block.bindings, relax.VarBinding(out, relax.Tuple(taps))]
    body = relax.SeqExpr([relax.DataflowBlock(bindings)], out)
    return relax.Function(func.params, body, out.ty, attrs=func.attrs), [v.name for v in taps]


def collect_ranges(
    mod: tvm.IRModule,
    reader: Iterable[np.ndarray],
    input_scale: float = 1.0 / 255.0,
    target="host",
) -> dict[str, float]:
    """Max |value| of every float intermediate of ``mod["main"]`` over the calibration batches."""
    func, names = instrument(mod["main"])
    vm = relax.VirtualMachine(build(replace_function(mod, "main", func), target), tvm.cpu())
    ranges = dict.fromkeys(names, 0.0)
    for images in reader:
        x = tvm.runtime.tensor(np.asarray(images, np.float32) * np.float32(input_scale))
        for name, value in zip(names, vm["main"](x), strict=True):
            ranges[name] = max(ranges[name], float(np.abs(value.numpy()).max()))
    return ranges


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


@dataclass(frozen=True)
class Calibration:
    """The result of :func:`calibrate`: max |value| per float Relax variable of the imported
    model, and the noise the images carried (``sigma`` None: clean images)."""

    ranges: dict[str, float]
    sigma: float | None = None
    bits: int = 64
    clip: str = "none"

    def check_noise(self, sigma: float, bits: int, clip: str) -> None:
        """Refuse ranges measured under other noise than the classifier will be smoothed with."""
        if (self.sigma, self.bits, self.clip) != (float(sigma), bits, clip):
            raise IntSmoothError(
                f"the calibration was measured with sigma={self.sigma}, bits={self.bits}, "
                f"clip={self.clip!r}, but the classifier is smoothed with sigma={sigma}, "
                f"bits={bits}, clip={clip!r}: calibrate again with the smoothing's noise "
                "(tvm_intsmooth.calibrate(model, images, sigma=..., bits=..., clip=...))"
            )


def calibrate(
    model: ModelLike,
    images: np.ndarray | Iterable[np.ndarray],
    *,
    sigma: float | None = None,
    bits: int = 64,
    clip: str = "none",
    batch_size: int = 64,
    target="host",
) -> Calibration:
    """Measure the activation ranges of a float classifier on calibration images.

    Args:
        model: what :func:`tvm_intsmooth.quantize_static` takes (ONNX file or proto, float
            Relax module, imported model).
        images: uint8 N x C x H x W pixels, or an iterable of such batches.
        sigma: None for the clean images (a plain quantized classifier); for a smoothed one, its
            noise level: each image is then seen once with the rounded Gaussian noise that the
            deployed sampler draws (``bits`` wide, ``clip`` policy), from fixed calibration
            streams, so that compiling twice gives the same ranges.
        batch_size: images per calibration run when an array is given.
        target: where the instrumented float model runs (the host).
    """
    imported = canonical_model(model)
    if sigma is None:
        if isinstance(images, np.ndarray):
            check_images(images, imported.input_shape, "calibration data")
            images = CalibrationReader(images, batch_size)
    else:
        table = rounded_gaussian_table(sigma, bits=bits)
        images = noisy_calibration(images, imported.input_shape, table, clip, batch_size)
    ranges = collect_ranges(imported.mod, images, target=target)
    return Calibration(ranges, None if sigma is None else float(sigma), bits, clip)
