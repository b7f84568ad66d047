"""CERTIFY and PREDICT against independent oracles: statsmodels' Clopper-Pearson interval (the
reference's own bound), the binomial tail that defines it, scipy's normal quantile, and an exact
integer computation of the two-sided binomial test at p = 1/2."""

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy.stats import binom, norm
from statsmodels.stats.proportion import proportion_confint

from tvm_intsmooth.certify.cohen import (
    ABSTAIN,
    certify,
    certify_count,
    lower_confidence_bound,
    predict,
)
from tvm_intsmooth.errors import IntSmoothError

ALPHAS = (0.001, 0.01, 0.05, 0.25)


def grid() -> list[tuple[int, int]]:
    pairs = set()
    for n in (1, 2, 3, 10, 100, 1000, 100_000):
        for n_a in (0, 1, n // 2, (9 * n) // 10, n - 1, n):
            if 0 <= n_a <= n:
                pairs.add((n_a, n))
    rng = np.random.default_rng(20190208)
    for _ in range(60):
        n = int(rng.integers(1, 200_000))
        pairs.add((int(rng.integers(0, n + 1)), n))
    return sorted(pairs)


def oracle_bound(n_a: int, n: int, alpha: float) -> float:
    return float(proportion_confint(n_a, n, alpha=2 * alpha, method="beta")[0])


@pytest.mark.parametrize("alpha", ALPHAS)
def test_lower_bound_is_statsmodels_clopper_pearson(alpha):
    for n_a, n in grid():
        bound = lower_confidence_bound(n_a, n, alpha)
        assert bound == pytest.approx(oracle_bound(n_a, n, alpha), abs=1e-9), (n_a, n)
        if n_a == 0:
            assert bound == 0.0
        elif n_a == n:
            # P(X >= n | p) = p^n = alpha
            assert bound == pytest.approx(alpha ** (1 / n), rel=1e-12)
        else:
            # the defining property: P(X >= n_a | p = bound) = alpha
            assert binom.sf(n_a - 1, n, bound) == pytest.approx(alpha, rel=1e-6), (n_a, n)


@pytest.mark.parametrize("sigma", (0.12, 0.5, 1.0))
@pytest.mark.parametrize("alpha", ALPHAS)
def test_certify_matches_reference_oracle(sigma, alpha):
    abstentions = certified = 0
    for n_a, n in grid():
        selection = np.array([2, 5, 0, 1])
        estimation = np.array([n - n_a, n_a, 0, 0])
        cert = certify(selection, estimation, sigma, alpha)
        p_bar = oracle_bound(n_a, n, alpha)
        assert (cert.n_a, cert.n) == (n_a, n)
        assert cert.p_a_lower == pytest.approx(p_bar, abs=1e-9)
        if p_bar < 0.5:  # the reference: `if pABar < 0.5: return ABSTAIN, 0.0`
            assert (cert.prediction, cert.radius) == (ABSTAIN, 0.0), (n_a, n)
            assert cert.abstained
            abstentions += 1
        else:
            assert cert.prediction == 1
            assert cert.radius == pytest.approx(sigma * norm.ppf(p_bar), abs=1e-9), (n_a, n)
            certified += 1
    assert abstentions > 5 and certified > 5


def test_certify_edge_cases():
    # n = 1: one win bounds pA by alpha, which is below 1/2: abstain
    assert certify(np.array([0, 1]), np.array([0, 1]), 0.5, 0.001).prediction == ABSTAIN
    # n = 1 with alpha above 1/2 would certify; nA = n = 100000 gives the largest radius
    cert = certify(np.array([0, 0, 3]), np.array([0, 0, 100_000]), 0.25, 0.001)
    assert cert.prediction == 2
    assert cert.radius == pytest.approx(0.25 * norm.ppf(0.001 ** (1 / 100_000)), abs=1e-12)
    # nA = 0: the guess never wins the estimation draws
    cert = certify(np.array([9, 1]), np.array([0, 50]), 0.25, 0.001)
    assert (cert.prediction, cert.radius, cert.p_a_lower, cert.n_a) == (ABSTAIN, 0.0, 0.0, 0)


def test_tv_bound_is_subtracted_exactly():
    sigma, alpha, n_a, n = 0.25, 0.001, 99_000, 100_000
    bound = oracle_bound(n_a, n, alpha)
    for tv in (0.0, 1e-4, 0.01, 0.3):
        cert = certify(np.array([0, 4]), np.array([n - n_a, n_a]), sigma, alpha, tv_bound=tv)
        assert cert.p_a_lower == pytest.approx(bound - tv, abs=1e-12)
        assert cert.radius == pytest.approx(sigma * norm.ppf(bound - tv), abs=1e-9)
    # a bound above 1/2 that the TV bound pushes below 1/2 must abstain
    n_a = 5_600
    bound = oracle_bound(n_a, 10_000, alpha)
    assert 0.5 < bound < 0.55
    assert certify(np.array([1, 0]), np.array([n_a, 10_000 - n_a]), 1.0, alpha).prediction == 0
    cert = certify(np.array([1, 0]), np.array([n_a, 10_000 - n_a]), 1.0, alpha, tv_bound=0.05)
    assert (cert.prediction, cert.radius) == (ABSTAIN, 0.0)


def test_bound_of_exactly_one_half_certifies_radius_zero():
    # The reference abstains only when pABar < 0.5. bound - (bound - 0.5) is exactly 0.5 in
    # floating point (Sterbenz), so this hits the boundary itself.
    bound = lower_confidence_bound(5_600, 10_000, 0.001)
    cert = certify_count(3, 5_600, 10_000, 1.0, 0.001, tv_bound=bound - 0.5)
    assert cert.p_a_lower == 0.5
    assert (cert.prediction, cert.radius) == (3, 0.0)


def test_ties_go_to_the_lowest_class():
    cert = certify(np.array([3, 7, 7, 1]), np.array([0, 1800, 900, 300]), 0.5, 0.001)
    assert (cert.prediction, cert.n_a, cert.n) == (1, 1800, 3000)
    # class 2 wins the estimation draws, but the guess (class 1) is what gets bounded
    cert = certify(np.array([3, 7, 7, 1]), np.array([0, 800, 900, 300]), 0.5, 0.001)
    assert (cert.prediction, cert.n_a, cert.n) == (ABSTAIN, 800, 2000)
    cert = certify(np.array([5, 5, 5]), np.array([1000, 0, 0]), 0.5, 0.001)
    assert cert.prediction == 0


def exact_two_sided_pvalue(count1: int, count2: int) -> Fraction:
    """Two-sided binomial test of count1 successes in count1 + count2 trials at p = 1/2: twice the
    smaller tail (the distribution is symmetric), capped at 1."""
    total, low = count1 + count2, min(count1, count2)
    tail = Fraction(sum(math.comb(total, i) for i in range(low + 1)), 2**total)
    return min(Fraction(1), 2 * tail)


def test_predict_matches_exact_binomial_test():
    alphas = (0.001, 0.01, 0.05, 0.2)
    checked = 0
    for count1 in (1, 2, 5, 10, 11, 30, 60, 200):
        for count2 in (0, 1, 3, 5, 10, 25, 100):
            if count2 > count1:
                continue
            counts = np.array([count2, 0, count1, count2 // 2])
            pvalue = exact_two_sided_pvalue(count1, count2)
            for alpha in alphas:
                if abs(float(pvalue) - alpha) < 1e-9 * alpha:
                    continue
                expected = ABSTAIN if pvalue > Fraction(alpha) else 2
                assert predict(counts, alpha) == expected, (count1, count2, alpha)
                checked += 1
    assert checked > 100


def test_predict_hand_computed():
    # 10 against 0: p-value 2 * 2^-10 = 0.001953125
    assert predict(np.array([10, 0, 0]), 0.002) == 0
    assert predict(np.array([10, 0, 0]), 0.0019) == ABSTAIN
    # a tie for the top is never significant
    assert predict(np.array([0, 500, 500, 3]), 0.5) == ABSTAIN
    assert predict(np.array([1, 0, 30, 2, 2]), 0.001) == 2


@pytest.mark.parametrize(
    "call",
    [
        lambda: certify(np.array([1, 2]), np.array([3, 4]), 0.25, 0.0),
        lambda: certify(np.array([1, 2]), np.array([3, 4]), 0.25, 1.0),
        lambda: certify(np.array([1, 2]), np.array([3, 4]), 0.25, float("nan")),
        lambda: certify(np.array([1, 2]), np.array([3, 4]), 0.0, 0.001),
        lambda: certify(np.array([1, 2]), np.array([3, 4]), -0.5, 0.001),
        lambda: certify(np.array([1, 2]), np.array([3, 4]), float("inf"), 0.001),
        lambda: certify(np.array([1, 2]), np.array([3, 4]), "a lot", 0.001),
        lambda: certify(np.array([1, -2]), np.array([3, 4]), 0.25, 0.001),
        lambda: certify(np.array([1, 2]), np.array([3, -4]), 0.25, 0.001),
        lambda: certify(np.array([1, 2]), np.array([3, 4, 5]), 0.25, 0.001),
        lambda: certify(np.array([1, 2]), np.array([0, 0]), 0.25, 0.001),
        lambda: certify(np.array([0, 0]), np.array([3, 4]), 0.25, 0.001),
        lambda: certify(np.array([1.0, 2.0]), np.array([3, 4]), 0.25, 0.001),
        lambda: certify(np.array([[1, 2]]), np.array([[3, 4]]), 0.25, 0.001),
        lambda: certify(np.array([1, 2]), np.array([3, 4]), 0.25, 0.001, tv_bound=-1e-3),
        lambda: certify(np.array([1, 2]), np.array([3, 4]), 0.25, 0.001, tv_bound=1.0),
        lambda: lower_confidence_bound(1, 0, 0.001),
        lambda: lower_confidence_bound(5, 4, 0.001),
        lambda: lower_confidence_bound(-1, 4, 0.001),
        lambda: lower_confidence_bound(2.5, 4, 0.001),
        lambda: predict(np.array([3, 4]), 0.0),
        lambda: predict(np.array([3, -4]), 0.01),
        lambda: predict(np.array([0, 0]), 0.01),
        lambda: predict(np.array([7]), 0.01),
    ],
)
def test_bad_arguments_raise_intsmooth_error(call):
    with pytest.raises(IntSmoothError):
        call()
