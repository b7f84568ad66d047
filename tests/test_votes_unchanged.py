"""Vote counts at fixed seeds are a pure function of (model, calibration, image, seed, stream, n):
restructuring the code, new kernels or a new import path must leave them identical to the bit.

The expected counts in data/expected_counts.json were computed once and committed; regenerate
them only for a deliberate change of the integer graph, saying why in the commit:

    python tests/test_votes_unchanged.py --write
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

EXPECTED = Path(__file__).parent / "data" / "expected_counts.json"
SEED = 0x5EED_2026
N = 250  # two full batches of 100 and a partial one

# name -> (is slow, schedules, test images): "auto" applies the shipped database (batch 100)
# where the model's workload key has one, None the default schedules. The images are ones whose
# votes split between classes, so that a changed logit shows in the counts.
CASES = {
    "cnn-tuned": (False, "auto", [29, 63, 4]),
    "cnn-default": (False, None, [29, 63, 4]),
    "resnet20-tuned": (True, "auto", [29, 4, 74]),
    "resnet20-default": (True, None, [29, 4, 74]),
    "depthwise": (False, None, [1, 15, 2]),
    "residual": (False, None, [0, 1, 2]),
}


def _model_and_data(name: str):
    """(model, calibration images, test images, sigma) of a case."""
    from tvm_intsmooth.assets import ASSETS
    from tvm_intsmooth.data import load_npz

    if name.startswith("cnn"):
        x, _ = load_npz(ASSETS / "data" / "fashion_mnist_test500.npz")
        return ASSETS / "models" / "fashion_mnist_cnn_sigma025.onnx", x[:64], x[400:], 0.25
    if name.startswith("resnet20"):
        x, _ = load_npz(ASSETS / "data" / "fashion_mnist32_test500.npz")
        model = ASSETS / "models" / "fashion_mnist32_resnet20_sigma025.onnx"
        return model, x[:64], x[400:], 0.25
    from onnx_models import TEST_MODELS

    shape = {"depthwise": (3, 12, 12), "residual": (3, 10, 10)}[name]
    rng = np.random.default_rng(7)
    x = rng.integers(0, 256, (80, *shape), dtype=np.uint8)
    return TEST_MODELS[name](), x[:64], x[64:], {"depthwise": 0.5, "residual": 2.0}[name]


def counts_of(name: str) -> list[list[int]]:
    """Counts of a case's test images, n = N, seed SEED, stream = image index."""
    import tvm_intsmooth as tis

    model, calibration, test, sigma = _model_and_data(name)
    _, schedules, images = CASES[name]
    smoothed = tis.smooth(model, calibration, sigma, batch=100)
    ex = tis.build(smoothed.mod, "host", require_integer_only=True, schedules=schedules)
    import tvm
    from tvm import relax

    clf = tis.SmoothedClassifier(relax.VirtualMachine(ex, tvm.cpu()), smoothed.metadata())
    return [clf.counts(test[i], N, SEED, stream=i).tolist() for i in images]


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=[pytest.mark.slow] if slow else [])
        for n, (slow, _, _) in CASES.items()
    ],
)
def test_counts_identical_to_committed(name):
    expected = json.loads(EXPECTED.read_text())[name]
    assert counts_of(name) == expected


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    EXPECTED.parent.mkdir(exist_ok=True)
    EXPECTED.write_text(json.dumps({name: counts_of(name) for name in CASES}, indent=1) + "\n")
