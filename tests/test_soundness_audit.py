"""Exact-enumeration soundness audit of the certificates (issue 12, item 11).

For a tiny model (2 input pixels, 3 classes, small integer-like weights) the smoothed class
probabilities can be computed exactly: the base classifier f (the quantized integer graph,
evaluated by the numpy interpreter) is tabulated on every noisy input the noise can reach, and
p_c(x) = sum_k p(k1) p(k2) [f(x + k) = c] is a sum over the integer noise table with the exact
rounded-Gaussian pmf (NoiseTable.exact_pmf; the untabulated tail, < 1e-21, is added where it could
help the certificate). As a matrix product, A I_c A^T with A the band matrix of the pmf, it gives
p_c on the whole 256 x 256 pixel grid at once.

Certificates come from the compiled classifier (SmoothedClassifier.certify, n0 and n small,
alpha large so that the Clopper-Pearson bounds are tight enough to be tested). A certificate
violates soundness when its radius exceeds sigma * Phi^-1(p_true) of its class, i.e. when its
p_A_lower is above the exact probability. Each certificate may fail with probability at most
alpha, so the violations are compared with alpha by a one-sided binomial test; and every grid
point inside every sound certified ball is checked for a different smoothed prediction
(exhaustively: the grid is small). A second audit with a wrong sigma (the artifact-integrity bug)
shows that the audit detects unsound certificates.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx_models import GraphBuilder
from scipy.stats import binomtest, norm

from tvm_intsmooth.reference import interpret
from tvm_intsmooth.runtime import SmoothedClassifier
from tvm_intsmooth.smoothing.api import smooth

SIGMA = 0.25
ALPHA = 0.05
N0, N = 20, 300
POINTS = 300


def two_pixel_model():
    """Three classes on two pixels: x0 - x1, x1 - x0 and a centre class 0.35 - |...|-ish
    (linear, with a bias), so that the three decision regions meet inside the image square."""
    g = GraphBuilder((1, 1, 2), seed=0)
    x = g.flatten("input")
    weight = np.array([[2.0, -1.0, -0.5], [-1.0, 2.0, -0.5]], np.float32)
    y = g.node("MatMul", [x, g.const(weight, "w")], (3,))
    return g.build(g.node("Add", [y, g.const(np.array([0.0, 0.0, 0.6], np.float32))], (3,)))


@pytest.fixture(scope="module")
def audit_model():
    calib = np.random.default_rng(0).integers(0, 256, (64, 1, 1, 2), dtype=np.uint8)
    smoothed = smooth(two_pixel_model(), calib, SIGMA, batch=100)
    return smoothed, SmoothedClassifier.from_model(smoothed)


@pytest.fixture(scope="module")
def exact_probabilities(audit_model):
    """p[c, a, b]: the exact smoothed probability of class c at pixels (a, b), and the tail."""
    smoothed, _ = audit_model
    table = smoothed.table
    K = table.K
    values = np.arange(-K, 255 + K + 1)
    grid = np.stack(np.meshgrid(values, values, indexing="ij"), -1).reshape(-1, 1, 1, 2)
    logits = interpret(smoothed.quantized.mod, grid.astype(np.int16))
    labels = logits.argmax(1).reshape(len(values), len(values))
    pmf = table.exact_pmf()
    band = np.zeros((256, len(values)))
    for a in range(256):
        band[a, a : a + 2 * K + 1] = pmf  # noisy value a + k sits at column a + k + K
    probs = np.stack(
        [band @ (labels == c).astype(np.float64) @ band.T for c in range(smoothed.num_classes)]
    )
    tail = 2 * table.tail_mass  # both coordinates' mass outside -K..K
    return probs, tail


def run_audit(audit_model, probs, tail, sigma_claimed, points, seed):
    """Certify ``points`` grid points; return (certified, violations, worst ratio)."""
    _, clf = audit_model
    clf_sigma = clf.sigma
    clf.sigma = sigma_claimed
    rng = np.random.default_rng(seed)
    results = []
    try:
        for index in range(points):
            a, b = (int(v) for v in rng.integers(0, 256, 2))
            x = np.array([[[a, b]]], np.uint8)
            cert = clf.certify(x, N0, N, ALPHA, index=index, seed=int(rng.integers(0, 2**63)))
            results.append((a, b, cert))
    finally:
        clf.sigma = clf_sigma
    certified = [(a, b, c) for a, b, c in results if not c.abstained]
    violations = [
        (a, b, c) for a, b, c in certified if c.p_a_lower > probs[c.prediction, a, b] + tail + 1e-9
    ]
    radius_exceeded = [
        (a, b, c)
        for a, b, c in certified
        if probs[c.prediction, a, b] + tail + 1e-9 < 1
        and c.radius > SIGMA * norm.ppf(min(probs[c.prediction, a, b] + tail + 1e-9, 1.0))
    ]
    return results, certified, violations, radius_exceeded


def test_no_certified_radius_exceeds_the_exact_one(audit_model, exact_probabilities):
    probs, tail = exact_probabilities
    assert np.allclose(probs.sum(0), 1 - tail, atol=1e-9)
    # the decision regions meet inside the square, so probabilities near 1/2 are audited
    top = probs.max(0)
    assert (top < 0.9).mean() > 0.02 and len(np.unique(probs.argmax(0))) == 3
    results, certified, violations, radius_exceeded = run_audit(
        audit_model, probs, tail, SIGMA, POINTS, seed=1
    )
    assert violations == radius_exceeded  # the same event, said twice
    print(
        f"audit: {len(results)} points, {len(certified)} certified and compared with the exact "
        f"radius, {len(violations)} violations (alpha {ALPHA})"
    )
    assert len(certified) >= POINTS // 2
    test = binomtest(len(violations), len(certified), ALPHA, alternative="greater")
    print(f"binomial test of violations against alpha: p = {test.pvalue:.3g}")
    assert test.pvalue > 1e-3


def test_no_misclassified_point_inside_a_certified_ball(audit_model, exact_probabilities):
    """Exhaustive over the pixel grid: inside every sound certified ball the smoothed classifier
    (exact probabilities) predicts the certified class."""
    probs, tail = exact_probabilities
    _, certified, violations, _ = run_audit(audit_model, probs, tail, SIGMA, 120, seed=2)
    sound = [item for item in certified if item not in violations]
    coords = np.arange(256)
    winner = probs.argmax(0)
    checked = 0
    for a, b, cert in sound:
        dist = np.hypot(coords[:, None] - a, coords[None, :] - b) / 255.0
        inside = dist < cert.radius
        checked += int(inside.sum())
        wrong = inside & ((winner != cert.prediction) | (probs[cert.prediction] <= 0.5))
        assert not wrong.any(), (a, b, cert, np.argwhere(wrong)[:5])
    print(f"ball search: {len(sound)} certified balls, {checked} grid points, none misclassified")
    assert checked > len(sound)  # the balls are not empty


def test_audit_detects_a_wrong_sigma(audit_model, exact_probabilities):
    """The artifact-integrity bug (a sigma 0.12 library certified with sigma 0.25's radius) in
    reverse: claiming twice the sigma makes many radii too large, and the audit says so."""
    probs, tail = exact_probabilities
    _, certified, _, exceeded = run_audit(audit_model, probs, tail, 2 * SIGMA, 100, seed=3)
    assert len(exceeded) > 0.5 * len(certified)
