"""The integer rewrites of issue 19's layers end to end, one small ONNX model per layer kind
(tests/layer_models.py): integer-only, the compiled logits equal to the numpy integer reference
bit for bit, and close to onnxruntime's float logits (up to the common logit scale)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from layer_models import LAYER_MODELS, SHAPE

import tvm_intsmooth as tis
from tvm_intsmooth.reference import interpret
from tvm_intsmooth.runtime import CompiledClassifier, float_inputs

FAST = {"squeeze_excitation", "pools", "silu"}


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (96, *SHAPE), dtype=np.uint8)


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=[] if n in FAST else [pytest.mark.slow]) for n in LAYER_MODELS],
)
def test_layer_is_exact_against_the_reference_and_close_to_float(name, images):
    model = LAYER_MODELS[name](seed=1)
    calib, test = images[:64], images[64:]
    quantized = tis.quantize_static(model, calib)
    assert tis.check_integer_only(quantized.mod) == []
    got = CompiledClassifier(quantized.mod).logits(test)
    np.testing.assert_array_equal(got, interpret(quantized.mod, test))
    want = ort.InferenceSession(model.SerializeToString()).run(None, {"input": float_inputs(test)})
    want = want[0]
    if name == "softmax_head":  # dropped: the integer logits are the ones before the softmax
        assert any("final softmax was dropped" in note for note in quantized.notes)
        assert np.mean(want.argmax(1) == got.argmax(1)) >= 0.95
        return
    scale = (want * got).sum() / (got * got).sum()  # the integer logits' common scale
    relative = np.linalg.norm(want - scale * got) / np.linalg.norm(want)
    assert relative < 0.05, relative
    assert np.mean(want.argmax(1) == got.argmax(1)) >= 0.9


def test_window_divisors_match_tvm_and_pytorch_float_pools():
    """The per-position divisors of the integer average pool are the float operators' own."""
    torch = pytest.importorskip("torch")
    from tvm_intsmooth.quantize.ops.pool import window_divisors

    ones = torch.ones(1, 1, 7, 7)
    for k, s, p, ceil, include in [
        (3, 2, 1, True, True),
        (3, 2, 1, True, False),
        (2, 2, 0, True, True),
        (3, 1, 1, False, False),
        (3, 2, 0, True, False),
    ]:
        avg = torch.nn.functional.avg_pool2d(
            ones, k, s, p, ceil_mode=ceil, count_include_pad=include
        )
        total = torch.nn.functional.avg_pool2d(
            ones, k, s, p, ceil_mode=ceil, count_include_pad=True, divisor_override=1
        )
        expected = (total / avg)[0, 0].numpy()  # window sum of ones / average = divisor
        out_hw = tuple(avg.shape[2:])
        got = window_divisors((7, 7), out_hw, (k, k), (s, s), (p,) * 4, (1, 1), include)
        np.testing.assert_allclose(got, expected, err_msg=f"{k} {s} {p} {ceil} {include}")
