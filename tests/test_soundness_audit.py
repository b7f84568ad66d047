"""Exact-enumeration soundness audit of the certificates.

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

from tvm_intsmooth.pipeline.smooth import smooth
from tvm_intsmooth.reference import interpret
from tvm_intsmooth.runtime import SmoothedClassifier

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


def exact_probability_map(smoothed, lo: int, hi: int) -> tuple[np.ndarray, float]:
    """p[c, i_1, ..., i_d]: the exact smoothed probability of class c at pixels lo + i, for every
    pixel vector in [lo, hi]^d, and the untabulated tail mass (added where it could help)."""
    table, d = smoothed.table, int(np.prod(smoothed.input_shape))
    K = table.K
    values = np.arange(lo - K, hi + K + 1)
    grid = np.stack(np.meshgrid(*[values] * d, indexing="ij"), -1).reshape(
        -1, *smoothed.input_shape
    )
    logits = interpret(smoothed.quantized.mod, grid.astype(np.int16))
    labels = logits.argmax(1).reshape([len(values)] * d)
    band = np.zeros((hi - lo + 1, len(values)))
    for i in range(hi - lo + 1):
        band[i, i : i + 2 * K + 1] = table.exact_pmf()  # noisy value lo + i + k at column i + k + K
    probs = []
    for c in range(smoothed.num_classes):
        p = (labels == c).astype(np.float64)
        for axis in range(d):  # sum over the noise of one coordinate at a time
            p = np.moveaxis(np.tensordot(band, p, axes=([1], [axis])), 0, axis)
        probs.append(p)
    return np.stack(probs), d * table.tail_mass


@pytest.fixture(scope="module")
def exact_probabilities(audit_model):
    return exact_probability_map(audit_model[0], 0, 255)


def run_audit(clf, probs, tail, lo, sigma, points, seed, sigma_claimed=None):
    """Certify ``points`` random pixel vectors of the tabulated region with the compiled
    classifier; return (all, certified, violations, radius_exceeded) as (point, cert) pairs."""
    shape = probs.shape[1:]
    rng = np.random.default_rng(seed)
    true_sigma, clf.sigma = clf.sigma, sigma_claimed or clf.sigma
    results = []
    try:
        for index in range(points):
            point = tuple(int(v) for v in rng.integers(0, shape[0], len(shape)))
            x = (np.array(point) + lo).astype(np.uint8).reshape(clf.input_shape)
            cert = clf.certify(x, N0, N, ALPHA, index=index, seed=int(rng.integers(0, 2**63)))
            results.append((point, cert))
    finally:
        clf.sigma = true_sigma

    def exact(point, cert):  # the exact probability, plus the tail where it could help
        return min(probs[(cert.prediction, *point)] + tail + 1e-9, 1.0)

    certified = [(p, c) for p, c in results if not c.abstained]
    violations = [(p, c) for p, c in certified if c.p_a_lower > exact(p, c)]
    exceeded = [
        (p, c)
        for p, c in certified
        if exact(p, c) < 1 and c.radius > sigma * norm.ppf(exact(p, c)) + 1e-12
    ]
    return results, certified, violations, exceeded


def audit(clf, probs, tail, lo, sigma, points, seed):
    results, certified, violations, exceeded = run_audit(clf, probs, tail, lo, sigma, points, seed)
    assert violations == exceeded  # the same event, said twice
    test = binomtest(len(violations), len(certified), ALPHA, alternative="greater")
    print(
        f"\naudit ({len(probs.shape) - 1} pixels): {len(results)} points, {len(certified)} "
        f"certified and compared with the exact radius, {len(violations)} violations "
        f"(alpha {ALPHA}); binomial test against alpha: p = {test.pvalue:.3g}"
    )
    assert len(certified) >= len(results) // 3
    assert test.pvalue > 1e-3
    return certified, violations


def ball_search(probs, certified, violations) -> int:
    """Every tabulated grid point inside a sound certified ball must be predicted as certified
    (exact probabilities); returns the number of points checked."""
    grids = np.meshgrid(*[np.arange(n) for n in probs.shape[1:]], indexing="ij")
    winner = probs.argmax(0)
    checked = 0
    for point, cert in certified:
        if (point, cert) in violations:
            continue
        dist = np.sqrt(sum((g - v) ** 2 for g, v in zip(grids, point, strict=True))) / 255.0
        inside = dist < cert.radius
        checked += int(inside.sum())
        wrong = inside & ((winner != cert.prediction) | (probs[cert.prediction] <= 0.5))
        assert not wrong.any(), (point, cert, np.argwhere(wrong)[:5])
    sound = len(certified) - len(violations)
    print(f"ball search: {sound} sound certified balls, {checked} grid points, none wrong")
    return checked


def test_two_pixels_no_radius_exceeds_the_exact_one(audit_model, exact_probabilities):
    probs, tail = exact_probabilities
    assert np.allclose(probs.sum(0), 1 - tail, atol=1e-9)
    # the decision regions meet inside the square, so probabilities near 1/2 are audited
    assert (probs.max(0) < 0.9).mean() > 0.02 and len(np.unique(probs.argmax(0))) == 3
    audit(audit_model[1], probs, tail, 0, SIGMA, POINTS, seed=1)


def test_two_pixels_no_misclassified_point_in_a_certified_ball(audit_model, exact_probabilities):
    probs, tail = exact_probabilities
    _, certified, violations, _ = run_audit(audit_model[1], probs, tail, 0, SIGMA, 120, seed=2)
    assert ball_search(probs, certified, violations) > len(certified)


def test_audit_detects_a_wrong_sigma(audit_model, exact_probabilities):
    """The artifact-integrity bug (a sigma 0.12 library certified with sigma 0.25's radius) in
    reverse: claiming twice the sigma makes most radii too large, and the audit says so."""
    probs, tail = exact_probabilities
    clf = audit_model[1]
    _, certified, _, exceeded = run_audit(
        clf, probs, tail, 0, SIGMA, 100, seed=3, sigma_claimed=2 * SIGMA
    )
    assert len(exceeded) > 0.5 * len(certified)


SIGMA3, LO3, HI3 = 0.02, 96, 127  # three pixels: a 32^3 region, K = 49


def three_pixel_model():
    """Two classes on three pixels: class 0 when x0 + x1 - x2 > 0.45 (inside the region)."""
    g = GraphBuilder((1, 1, 3), seed=0)
    x = g.flatten("input")
    weight = np.array([[1.0, -0.2], [1.0, -0.2], [-1.0, 0.2]], np.float32)
    y = g.node("MatMul", [x, g.const(weight, "w")], (2,))
    return g.build(g.node("Add", [y, g.const(np.array([0.0, 0.54], np.float32))], (2,)))


def test_three_pixels_audit_and_ball_search():
    calib = np.random.default_rng(0).integers(LO3, HI3 + 1, (64, 1, 1, 3), dtype=np.uint8)
    smoothed = smooth(three_pixel_model(), calib, SIGMA3, batch=100)
    clf = SmoothedClassifier.from_model(smoothed)
    probs, tail = exact_probability_map(smoothed, LO3, HI3)
    assert len(np.unique(probs.argmax(0))) == 2
    certified, violations = audit(clf, probs, tail, LO3, SIGMA3, 150, seed=4)
    assert ball_search(probs, certified, violations) > len(certified)
