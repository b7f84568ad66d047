"""Bundled trained models on bundled real Fashion-MNIST images: the integer model keeps top-1,
on clean images and on the noisy images that smoothing feeds it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tvm_intsmooth.analysis import check_integer_only
from tvm_intsmooth.assets import ASSETS
from tvm_intsmooth.data import load_npz
from tvm_intsmooth.importer import import_onnx
from tvm_intsmooth.pipeline.quantize import quantize_static
from tvm_intsmooth.pipeline.smooth import smooth
from tvm_intsmooth.reference import interpret
from tvm_intsmooth.runtime import CompiledClassifier, float_inputs
from tvm_intsmooth.smoothing.noise_sampler import sample_noise_numpy

MANIFEST = json.loads((ASSETS / "models" / "manifest.json").read_text())["models"]
DATA = {(1, 28, 28): "fashion_mnist_test500.npz", (3, 32, 32): "fashion_mnist32_test500.npz"}


@pytest.mark.parametrize("entry", MANIFEST, ids=[m["file"] for m in MANIFEST])
def test_integer_model_keeps_top1_on_real_images(entry):
    x, y = load_npz(ASSETS / "data" / DATA[tuple(entry["input_shape"])])
    model = ASSETS / "models" / entry["file"]
    qmodel = quantize_static(model, x[::2])  # calibrate on half, no labels used
    assert check_integer_only(qmodel.mod) == []

    float_pred = CompiledClassifier(import_onnx(model).mod).logits(float_inputs(x)).argmax(1)
    int_logits = CompiledClassifier(qmodel.mod).logits(x)
    np.testing.assert_array_equal(int_logits[:8], interpret(qmodel.mod, x[:8]))
    int_pred = int_logits.argmax(1)
    assert np.mean(int_pred == float_pred) >= 0.99
    assert np.mean(float_pred == y) - np.mean(int_pred == y) <= 0.005


@pytest.mark.slow
@pytest.mark.parametrize("entry", MANIFEST, ids=[m["file"] for m in MANIFEST])
def test_smoothed_base_classifier_agrees_with_float_under_noise(entry):
    """The int16 base classifier inside the smoothed model, calibrated on noisy copies, against
    the float model on the same noisy pixels (x + k) / 255, unclipped: the comparison that
    `intsmooth certify --float` makes, one noisy sample at a time."""
    x, _ = load_npz(ASSETS / "data" / DATA[tuple(entry["input_shape"])])
    model = ASSETS / "models" / entry["file"]
    smoothed = smooth(model, x[::2], entry["sigma"])  # calibrate on half, no labels
    test = x[1::2]
    coords = int(np.prod(test.shape[1:]))
    noise = sample_noise_numpy(smoothed.table, 2026, 1, 0, len(test), coords)
    noisy = test.astype(np.int16) + noise.reshape(test.shape)
    assert noisy.min() < 0 and noisy.max() > 255  # unclipped, as the float reference

    float_pred = CompiledClassifier(import_onnx(model).mod).logits(float_inputs(noisy)).argmax(1)
    int_pred = CompiledClassifier(smoothed.quantized.mod).logits(noisy).argmax(1)
    agreement = np.mean(int_pred == float_pred)
    assert agreement >= 0.99, f"{agreement:.4f} of {len(test)} noisy samples agree"
