"""Bundled models (trained by tvm_intsmooth.train, see models/manifest.json) and real test data."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).parent
DEMO_MODEL = ASSETS / "models" / "fashion_mnist_cnn_sigma025.onnx"
DEMO_DATA = ASSETS / "data" / "fashion_mnist_test500.npz"
