"""Shared fixtures: the small ONNX test models, quantized once per session."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from onnx_models import TEST_MODELS  # noqa: E402


def _shipped_schedules() -> dict[str, str]:
    root = Path(__file__).resolve().parent.parent / "schedules"
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="session", autouse=True)
def shipped_schedules_unchanged():
    """No test (tune tests included) writes the shipped databases under schedules/."""
    before = _shipped_schedules()
    yield
    assert _shipped_schedules() == before, "a test changed the shipped databases in schedules/"


def random_images(shape, n, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


@pytest.fixture(scope="session")
def quantized_test_models():
    """name -> (onnx model, ImportedModel, QuantizedModel), calibrated on random images."""
    from tvm_intsmooth.importer import import_onnx
    from tvm_intsmooth.pipeline.quantize import quantize_static

    out = {}
    for name, make in TEST_MODELS.items():
        model = make()
        imported = import_onnx(model)
        calib = random_images(imported.input_shape, 128, seed=1)
        out[name] = (model, imported, quantize_static(imported, calib))
    return out
