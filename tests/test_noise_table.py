"""Rounded Gaussian threshold tables, checked against scipy (doubles) and mpmath (50 digits)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import special, stats

from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.smoothing.noise_table import (
    NoiseTable,
    normal_upper_tail,
    rounded_gaussian_table,
)

STEP = 1 / 255


@pytest.fixture(scope="module")
def tables():
    return {(s, b): rounded_gaussian_table(s, bits=b) for s in (0.05, 0.25) for b in (32, 64)}


def _scipy_pmf(sigma: float, k_max: int) -> np.ndarray:
    """p(k), k = -K..K, by differences of scipy's CDF (survival function on the right)."""
    k = np.arange(-k_max, k_max + 1, dtype=np.float64)
    upper = (k + 0.5) * STEP / sigma
    lower = (k - 0.5) * STEP / sigma
    left = stats.norm.cdf(upper) - stats.norm.cdf(lower)
    right = stats.norm.sf(lower) - stats.norm.sf(upper)
    return np.where(k <= 0, left, right)


def test_upper_tail_matches_scipy_and_mpmath():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 60
    for x in [Fraction(0), Fraction(1, 510), Fraction(1, 3), Fraction(5, 2), Fraction(10), 37]:
        x = Fraction(x)
        got = normal_upper_tail(x)
        rel = 1e-14 if x < 30 else 1e-12  # scipy loses a few digits near the double underflow
        assert float(got) == pytest.approx(special.ndtr(-float(x)), rel=rel, abs=0)
        exact = mpmath.ncdf(-mpmath.mpf(x.numerator) / x.denominator)
        assert abs(mpmath.mpf(str(got)) / exact - 1) < mpmath.mpf(10) ** -45
    with pytest.raises(ValueError):
        normal_upper_tail(Fraction(-1))


@pytest.mark.parametrize("bits", [32, 64])
def test_thresholds_are_monotone_symmetric_and_in_range(tables, bits):
    table = tables[(0.25, bits)]
    t = np.array(table.thresholds, dtype=object)
    assert len(t) == 2 * table.K
    assert all(a <= b for a, b in zip(t, t[1:], strict=False))
    assert t[0] >= 0 and t[-1] <= 2**bits
    assert all(t[j] + t[-1 - j] == 2**bits for j in range(len(t)))  # T_j = 2^b - T_{-j-1}
    assert all(v < 2 ** (bits - 1) for v in table.left_thresholds())


def test_thresholds_are_rounded_cdf_values(tables):
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    table = tables[(0.25, 64)]
    for j in range(-table.K, table.K, 37):
        z = mpmath.mpf(2 * j + 1) / (2 * 255) / mpmath.mpf(0.25)
        exact = mpmath.ncdf(z) * 2**64
        assert table.thresholds[j + table.K] == int(mpmath.nint(exact))
    table32 = tables[(0.25, 32)]
    j = np.arange(-table32.K, table32.K)
    scaled = special.ndtr((j + 0.5) * STEP / 0.25) * 2.0**32
    assert np.abs(np.array(table32.thresholds, dtype=np.float64) - scaled).max() <= 0.5 + 1e-4


@pytest.mark.parametrize("bits", [32, 64])
def test_implemented_pmf_sums_to_one_exactly(tables, bits):
    table = tables[(0.05, bits)]
    counts = table.implemented_counts()
    assert len(counts) == 2 * table.K + 1
    assert all(isinstance(c, int) and c >= 0 for c in counts)
    assert sum(counts) == 2**bits
    assert counts == counts[::-1]
    pmf = table.implemented_pmf()
    np.testing.assert_array_equal(pmf, np.array(counts, dtype=np.float64) / 2.0**bits)


@pytest.mark.parametrize("sigma", [0.01, 0.05, 0.12])
def test_exact_pmf_matches_scipy_cdf_differences(sigma):
    table = rounded_gaussian_table(sigma, bits=64)
    np.testing.assert_allclose(table.exact_pmf(), _scipy_pmf(sigma, table.K), rtol=1e-9, atol=0)
    assert table.exact_pmf().sum() + table.tail_mass == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize("sigma", [0.05, 0.25])
def test_tv_bound_covers_brute_force_tv_32_bit(tables, sigma):
    table = tables[(sigma, 32)]
    implemented = table.implemented_pmf()
    exact = _scipy_pmf(sigma, table.K)
    tail = 2 * stats.norm.sf((table.K + 0.5) * STEP / sigma)
    brute = 0.5 * (np.abs(implemented - exact).sum() + tail)
    bound = table.tv_per_coordinate()
    assert brute <= bound
    assert bound <= 2 * table.K * 2.0**-33 + table.tail_mass  # the generic bound of the docs
    assert brute >= bound / 4  # rounding errors of this size really occur: the bound is tight


def test_tv_bound_covers_brute_force_tv_64_bit(tables):
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    table = tables[(0.05, 64)]
    scale = mpmath.mpf(2) ** 64
    half_steps = [
        mpmath.mpf(2 * j + 1) / (2 * 255) / mpmath.mpf(0.05)
        for j in range(-table.K - 1, table.K + 1)
    ]
    cdf = [mpmath.ncdf(z) for z in half_steps]  # F(-K-1) .. F(K)
    brute = cdf[0] + (1 - cdf[-1])  # mass outside -K..K
    for i, count in enumerate(table.implemented_counts()):
        brute += abs(count / scale - (cdf[i + 1] - cdf[i]))
    brute /= 2
    assert brute <= table.tv_per_coordinate() <= 2 * table.K * 2.0**-65 + table.tail_mass
    assert brute >= table.tv_per_coordinate() / 4


def test_k_is_the_smallest_with_tail_below_the_bound():
    for sigma, bits in [(0.12, 32), (0.5, 64)]:
        table = rounded_gaussian_table(sigma, bits=bits)
        bound = 2.0 ** -(bits + 6)
        log_tail = [
            math.log(2) + special.log_ndtr(-(k + 0.5) * STEP / sigma)
            for k in (table.K - 1, table.K)
        ]
        assert log_tail[1] <= math.log(bound) < log_tail[0]
        assert table.tail_mass <= bound
    loose = rounded_gaussian_table(0.25, bits=64, tail=1e-6)
    assert loose.K < rounded_gaussian_table(0.25, bits=64).K
    assert loose.tail_mass <= 1e-6


def test_k_grows_with_sigma_and_bits(tables):
    assert tables[(0.05, 64)].K < tables[(0.25, 64)].K
    assert tables[(0.25, 32)].K < tables[(0.25, 64)].K
    # K covers about 6.9 (32 bits) and 9.6 (64 bits) standard deviations, in grid steps.
    assert pytest.approx(6.9 * 0.25 * 255, rel=0.05) == tables[(0.25, 32)].K
    assert pytest.approx(9.6 * 0.25 * 255, rel=0.05) == tables[(0.25, 64)].K


def test_tv_bound_sizes_of_design_notes(tables):
    """docs/soundness.md 3: negligible at b = 64, about 1e-4 for CIFAR-sized inputs at b = 32."""
    assert tables[(0.25, 32)].tv_bound(3 * 32 * 32) == pytest.approx(1.5e-4, rel=0.1)
    assert tables[(0.25, 64)].tv_bound(3 * 32 * 32) < 1e-12
    per = tables[(0.25, 32)].tv_per_coordinate()
    assert tables[(0.25, 32)].tv_bound(784) >= 784 * per
    assert tables[(0.25, 32)].tv_bound(0) == 0
    assert rounded_gaussian_table(1.0, bits=32, tail=0.5).tv_bound(10**9) == 1.0


def test_exact_step_default_is_one_255th():
    table = rounded_gaussian_table(0.25)
    assert table.step == Fraction(1, 255)
    assert table.bits == 64 and table.per_philox_block == 2
    assert rounded_gaussian_table(0.25, bits=32).per_philox_block == 4
    assert list(table.support) == list(range(-table.K, table.K + 1))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sigma": 0.0},
        {"sigma": -0.25},
        {"sigma": float("nan")},
        {"sigma": float("inf")},
        {"sigma": "0.25"},
        {"sigma": 0.25, "bits": 16},
        {"sigma": 0.25, "bits": True},
        {"sigma": 0.25, "step": 0},
        {"sigma": 0.25, "tail": 1.0},
        {"sigma": 0.25, "tail": 0.0},
        {"sigma": 0.25, "tail": 1e-200},
        {"sigma": 200.0},  # more than 32767 grid steps: no int16 noise
    ],
)
def test_bad_arguments_raise_intsmooth_error(kwargs):
    with pytest.raises(IntSmoothError):
        rounded_gaussian_table(**kwargs)


def test_bad_tables_and_coordinate_counts_raise(tables):
    table = tables[(0.05, 32)]
    with pytest.raises(IntSmoothError):
        table.tv_bound(-1)
    with pytest.raises(IntSmoothError):
        table.tv_bound(2.5)
    broken = list(table.thresholds)
    broken[0], broken[-1] = broken[-1], broken[0]
    with pytest.raises(IntSmoothError, match="non-decreasing"):
        NoiseTable(
            sigma=table.sigma,
            step=table.step,
            bits=table.bits,
            K=table.K,
            thresholds=tuple(broken),
            tail_mass=table.tail_mass,
            rounding_error=table.rounding_error,
            left_cdf=table.left_cdf,
        )


def test_far_upper_tail_matches_mpmath():
    """From x = 20 on the asymptotic series is used; it keeps 45 digits where the Taylor series
    would need x^2 / 4.6 digits (and hang)."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 70
    for x in [Fraction(20), Fraction(41, 2), Fraction(37), Fraction(100), Fraction(588)]:
        exact = mpmath.ncdf(-mpmath.mpf(x.numerator) / x.denominator)
        assert abs(mpmath.mpf(str(normal_upper_tail(x))) / exact - 1) < mpmath.mpf(10) ** -45


def test_tiny_sigma_builds_quickly():
    """sigma 1e-5 (x = 196 per half step): Phi far in the tail, without a Taylor series that
    would never converge."""
    import signal

    def too_slow(*_):
        raise TimeoutError("rounded_gaussian_table(1e-5) took more than 20 s")

    previous = signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(20)
    try:
        table = rounded_gaussian_table(1e-5)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert table.K == 1 and table.thresholds == (0, 2**64)  # the noise is always 0
    assert table.tv_per_coordinate() < 1e-40
