"""Top-1 agreement of the integer classifier that ``intsmooth compile`` deploys with the float
model, on noisy images it was not calibrated on.

The smoothed classifier's base model takes int16 noisy pixels and was calibrated on noisy copies
of the calibration images; its agreement with the float model is measured on what it will see:
held-out images plus the rounded Gaussian noise of the deployed sampler (drawn from streams
that neither calibration nor CERTIFY/PREDICT use), clipped as the classifier clips them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tvm

from tvm_intsmooth.runtime.classifier import CompiledClassifier, float_inputs
from tvm_intsmooth.smoothing.noise_sampler import sample_noise_numpy

AGREEMENT_SEED = 0xA6EE
# Above calibration's streams (3 * 2^62 + batch number), below 2^64; CERTIFY and PREDICT stay
# below 2^63 + 2^62.
AGREEMENT_STREAM = 3 * 2**62 + 2**61
HELD_OUT_IMAGES = 200


def held_out_images(
    data: str | Path, calibration_images: int, max_count: int = HELD_OUT_IMAGES
) -> tuple[np.ndarray, str]:
    """Images of ``data`` that calibration (its first ``calibration_images`` training images)
    did not see, and where they come from: the test split of a named dataset, or the images of
    an .npz after the calibration ones; the calibration images themselves if there are none."""
    from tvm_intsmooth.data import load_dataset

    spec = str(data)
    if not spec.lower().endswith(".npz"):
        x, _ = load_dataset(spec, split="test", max_count=max_count)
        return x, f"{len(x)} test images of {spec}"
    x, _ = load_dataset(spec, split="train")
    if len(x) > calibration_images:
        rest = x[calibration_images : calibration_images + max_count]
        return rest, f"{len(rest)} held-out images of {spec} (after the calibration ones)"
    x = x[:max_count]
    return x, f"{len(x)} images of {spec} (the calibration images: it has no others)"


def noisy_agreement(smoothed, float_mod: tvm.IRModule, images: np.ndarray) -> float:
    """Top-1 agreement of ``smoothed``'s base classifier (int16 noisy pixels in) with the float
    module, on one noisy copy of each image drawn from the deployed sampler."""
    shape = tuple(smoothed.input_shape)
    coords = int(np.prod(shape))
    noise = sample_noise_numpy(
        smoothed.table, AGREEMENT_SEED, AGREEMENT_STREAM, 0, len(images), coords
    )
    noisy = images.astype(np.int16) + noise.reshape(images.shape)
    if smoothed.clip == "clip":
        noisy = np.clip(noisy, 0, 255).astype(np.int16)
    integer = CompiledClassifier(smoothed.quantized.mod).logits(noisy).argmax(1)
    reference = CompiledClassifier(float_mod).logits(float_inputs(noisy)).argmax(1)
    return float(np.mean(integer == reference))
