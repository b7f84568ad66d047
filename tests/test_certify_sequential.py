"""Sequential certification at chosen radii (certify/sequential.py) against independent references:
the mixture martingale against 50-digit mpmath (closed form and numerical integral), its
martingale identity, the bounds against a brute-force grid of M_t(p0), exact fixed-n coverage
from binomial pmfs, monotonicity, decisions on hand-built count sequences, the driver's batching,
and input validation. The soundness audit under optional stopping is
tests/test_sequential_soundness_audit.py."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from scipy.special import betaincinv, ndtr
from scipy.stats import binom

from tvm_intsmooth.certify.cohen import ABSTAIN
from tvm_intsmooth.certify.sequential import (
    BOUND_SLACK,
    CERTIFIED,
    CONTINUE,
    IMPOSSIBLE,
    MIXTURE_A,
    MIXTURE_B,
    STOP_DECIDED,
    STOP_N_MAX,
    UNDECIDED,
    UNREACHABLE,
    SequentialCertificate,
    certify_sequential,
    checkpoints,
    confidence_sequence_lower,
    confidence_sequence_upper,
    mixture_log_martingale,
    sequential_decision,
)
from tvm_intsmooth.errors import IntSmoothError

SIGMA = 0.25
RADII = (0.25, 0.5, 0.75, 1.0)  # thresholds Phi(1), Phi(2), Phi(3), Phi(4)
THRESHOLDS = [float(ndtr(r / SIGMA)) for r in RADII]  # 0.841, 0.97725, 0.99865, 0.99997


def mp_log_martingale(p0: float, k: int, t: int) -> float:
    """log M_t(p0) from the Beta function in 50-digit arithmetic."""
    with mpmath.workdps(50):
        a, b, p0 = mpmath.mpf(MIXTURE_A), mpmath.mpf(MIXTURE_B), mpmath.mpf(p0)
        value = (
            mpmath.log(mpmath.beta(a + k, b + t - k))
            - mpmath.log(mpmath.beta(a, b))
            - k * mpmath.log(p0)
            - (t - k) * mpmath.log(1 - p0)
        )
        return float(value)


# ------------------------------------------------------------------------------------------------
# the mixture martingale


@pytest.mark.parametrize("k, t", [(0, 1), (1, 1), (3, 10), (9, 10), (50, 100), (990, 1000)])
@pytest.mark.parametrize("p0", [0.01, 0.3, 0.5, 0.9, 0.999])
def test_log_martingale_matches_mpmath(k, t, p0):
    assert mixture_log_martingale(p0, k, t) == pytest.approx(mp_log_martingale(p0, k, t), abs=1e-9)


@pytest.mark.parametrize("k, t", [(0, 3), (2, 5), (7, 12), (20, 20)])
def test_log_martingale_is_the_mixture_of_likelihood_ratios(k, t):
    """M_t(p0) = integral of (p/p0)^k ((1-p)/(1-p0))^(t-k) over p ~ Beta(a, b) (tanh-sinh quad,
    with v = p^a on [0, 1/2] and u = (1-p)^b on [1/2, 1], which take the prior's singularities
    at 0 and 1 out of the integrand)."""
    p0 = 0.4
    with mpmath.workdps(30):
        a, b = mpmath.mpf(MIXTURE_A), mpmath.mpf(MIXTURE_B)

        def ratio(p):
            return (p / p0) ** k * ((1 - p) / (1 - p0)) ** (t - k)

        def low(v):  # p = v^(1/a): p^(a-1) dp = dv / a
            p = v ** (1 / a)
            return (1 - p) ** (b - 1) * ratio(p) / a

        def high(u):  # p = 1 - u^(1/b): (1-p)^(b-1) dp = du / b
            p = 1 - u ** (1 / b)
            return p ** (a - 1) * ratio(p) / b

        half = mpmath.mpf(1) / 2
        mixture = mpmath.quad(low, [0, half**a]) + mpmath.quad(high, [0, half**b])
        mixture /= mpmath.beta(a, b)
    assert math.exp(mixture_log_martingale(p0, k, t)) == pytest.approx(float(mixture), rel=1e-9)


@pytest.mark.parametrize("p0", [0.05, 0.5, 0.93])
def test_martingale_identity(p0):
    """E[M_{t+1} | k successes in t] = M_t under Bernoulli(p0): what Ville's inequality needs."""
    assert p0 * math.exp(mixture_log_martingale(p0, 1, 1)) + (1 - p0) * math.exp(
        mixture_log_martingale(p0, 0, 1)
    ) == pytest.approx(1.0, rel=1e-12)  # M_0 = 1
    for k, t in [(0, 1), (1, 1), (3, 10), (10, 10), (40, 70)]:
        nxt = p0 * math.exp(mixture_log_martingale(p0, k + 1, t + 1)) + (1 - p0) * math.exp(
            mixture_log_martingale(p0, k, t + 1)
        )
        assert nxt == pytest.approx(math.exp(mixture_log_martingale(p0, k, t)), rel=1e-10)


def test_log_martingale_on_an_array_and_at_the_ends():
    values = mixture_log_martingale(np.array([0.0, 0.5, 1.0]), 3, 10)
    assert values.shape == (3,) and np.isinf(values[0]) and np.isinf(values[2])
    assert values[1] == pytest.approx(mp_log_martingale(0.5, 3, 10), abs=1e-12)
    assert mixture_log_martingale(0.0, 0, 10) == pytest.approx(mp_log_martingale(1e-300, 0, 10))


# ------------------------------------------------------------------------------------------------
# the bounds


@pytest.mark.parametrize("alpha", [0.05, 0.001])
@pytest.mark.parametrize("k, t", [(1, 10), (3, 10), (7, 10), (10, 10), (50, 100), (990, 1000)])
def test_bounds_are_the_ends_of_the_brute_force_confidence_set(k, t, alpha):
    """On a grid of 400,001 values of p0, {M_t(p0) < 1/alpha} is exactly [lower, upper]."""
    grid = np.linspace(0.0, 1.0, 400_001)
    spacing = grid[1]
    log_m = np.array([mp_log_martingale(p, k, t) for p in (0.3, 0.6)])  # spot check of the grid
    assert np.allclose(log_m, mixture_log_martingale(np.array([0.3, 0.6]), k, t), atol=1e-9)
    inside = mixture_log_martingale(grid, k, t) < math.log(1 / alpha)
    lower = confidence_sequence_lower(k, t, alpha)
    upper = confidence_sequence_upper(k, t, alpha)
    assert inside.any()
    first, last = grid[inside][0], grid[inside][-1]
    assert np.all(inside[(grid >= first) & (grid <= last)]), "the set is an interval"
    assert lower <= first < lower + spacing + BOUND_SLACK
    assert upper >= last > upper - spacing - BOUND_SLACK
    assert lower <= k / t <= upper


@pytest.mark.parametrize("alpha", [0.2, 0.05, 0.001])
def test_the_bound_root_is_tight(alpha):
    """At lower + BOUND_SLACK the martingale is at 1/alpha (to 1e-6 in log), not above it."""
    for k, t in [(1, 3), (30, 40), (990, 1000), (99_000, 100_000), (100_000, 100_000)]:
        lower = confidence_sequence_lower(k, t, alpha)
        assert mp_log_martingale(lower + BOUND_SLACK, k, t) == pytest.approx(
            math.log(1 / alpha), abs=1e-6
        )
        assert mp_log_martingale(lower, k, t) >= math.log(1 / alpha)
        upper = confidence_sequence_upper(t - k, t, alpha)  # the same at the upper end
        assert mp_log_martingale(upper - BOUND_SLACK, t - k, t) == pytest.approx(
            math.log(1 / alpha), abs=1e-6
        )
        assert mp_log_martingale(upper, t - k, t) >= math.log(1 / alpha)


def test_bounds_at_the_edges():
    assert confidence_sequence_lower(0, 5, 0.05) == 0.0
    assert confidence_sequence_upper(5, 5, 0.05) == 1.0
    # all successes: M_t(p0) = B(a + t, b) / B(a, b) / p0^t,
    # so lower = (B(a + t, b) / B(a, b) * alpha)^(1 / t)
    t, alpha = 1000, 0.001
    with mpmath.workdps(40):
        ratio = mpmath.beta(MIXTURE_A + t, MIXTURE_B) / mpmath.beta(MIXTURE_A, MIXTURE_B)
        exact = float((ratio * alpha) ** (mpmath.mpf(1) / t))
    assert confidence_sequence_lower(t, t, alpha) == pytest.approx(exact, abs=2 * BOUND_SLACK)
    assert confidence_sequence_lower(t, t, alpha) <= exact


@pytest.mark.parametrize("alpha", [0.2, 0.01])
@pytest.mark.parametrize("n", [20, 300])
@pytest.mark.parametrize("p", [0.3, 0.8, 0.97])
def test_fixed_n_coverage_is_exact_from_the_binomial_pmf(n, p, alpha):
    """At any one n the time-uniform bounds are ordinary confidence bounds: P(lower > p) plus
    P(upper < p) is at most alpha (summed exactly over the binomial pmf)."""
    ks = np.arange(n + 1)
    wrong = [
        confidence_sequence_lower(int(k), n, alpha) > p
        or confidence_sequence_upper(int(k), n, alpha) < p
        for k in ks
    ]
    assert float(binom.pmf(ks, n, p)[wrong].sum()) <= alpha


def test_monotone_in_the_counts():
    """More successes never lower the lower bound; one more failure never raises it; one more
    success with one more draw never lowers it (the reasoning behind 'unreachable')."""
    for alpha in (0.3, 0.05, 0.001):
        for t in [*range(1, 40), 200]:
            lows = [confidence_sequence_lower(k, t, alpha) for k in range(t + 1)]
            next_lows = [confidence_sequence_lower(k, t + 1, alpha) for k in range(t + 2)]
            ups = [confidence_sequence_upper(k, t, alpha) for k in range(t + 1)]
            assert all(x <= y for x, y in zip(lows, lows[1:], strict=False))
            assert all(x <= y for x, y in zip(ups, ups[1:], strict=False))
            assert all(next_lows[k] <= lows[k] for k in range(t + 1))
            assert all(next_lows[k + 1] >= lows[k] for k in range(t + 1))


def test_the_anytime_bound_is_below_clopper_pearson():
    """Uniformity over n is paid for: on this grid the lower bound is never above the fixed-n
    one-sided Clopper-Pearson bound at the same alpha (an observed property, not a theorem), and
    it approaches it as n grows (within 0.3% of pA at n = 100,000)."""
    for alpha in (0.2, 0.05, 0.001):
        for t in (1, 2, 5, 10, 100, 1000, 10_000, 100_000):
            for k in sorted({0, 1, t // 2, (9 * t) // 10, (99 * t) // 100, t - 1, t}):
                cp = float(betaincinv(k, t - k + 1, alpha)) if k else 0.0
                assert confidence_sequence_lower(k, t, alpha) <= cp, (k, t, alpha)
    cp = float(betaincinv(99_000, 1001, 0.001))
    assert cp - confidence_sequence_lower(99_000, 100_000, 0.001) < 0.003


def test_checkpoints():
    assert checkpoints(100_000) == (
        *(1000, 1500, 2000, 2500, 3500, 4500, 6000, 7500, 9500, 12000, 15000, 19000, 24000),
        *(30000, 37500, 47000, 59000, 74000, 92500, 100_000),
    )
    assert checkpoints(4000) == (1000, 1500, 2000, 2500, 3500, 4000)
    assert checkpoints(1000) == (1000,)
    assert checkpoints(7) == (7,)
    assert checkpoints(np.int64(2500)) == (1000, 1500, 2000, 2500)


# ------------------------------------------------------------------------------------------------
# decisions on hand-built count sequences (sigma 0.25, radii 0.25, 0.5, 0.75, 1.0, alpha 0.001)


def decide(history, **kwargs) -> SequentialCertificate:
    args = {"sigma": SIGMA, "radii": RADII, "alpha": 0.001, "tv_bound": 0.0, "n_max": 100_000}
    args.update(kwargs)
    return sequential_decision(3, history, **args)


def test_a_coin_flip_is_decided_at_once():
    cert = decide([(500, 1000)])  # upper bound 0.576 < Phi(1)
    assert cert.status == (IMPOSSIBLE,) * 4
    assert cert.stop_reason == STOP_DECIDED and cert.decided and cert.stopped
    assert cert.prediction == ABSTAIN and cert.abstained and cert.radius == 0.0
    assert (cert.n_a, cert.n) == (500, 1000)


def test_interim_then_decided():
    first = decide([(990, 1000)])  # lower 0.969, upper 0.99839
    assert first.status == (CERTIFIED, UNDECIDED, IMPOSSIBLE, IMPOSSIBLE)
    assert first.stop_reason == CONTINUE and not first.stopped
    assert first.prediction == 3 and first.radius == 0.25  # an interim result is a certificate
    assert first.p_a_lower == confidence_sequence_lower(990, 1000, 0.001)
    assert first.p_a_lower < THRESHOLDS[1] <= first.p_a_upper < THRESHOLDS[2]
    second = decide([(990, 1000), (1990, 2000)])  # lower 0.9844 >= Phi(2)
    assert second.status == (CERTIFIED, CERTIFIED, IMPOSSIBLE, IMPOSSIBLE)
    assert second.stop_reason == STOP_DECIDED
    assert (second.prediction, second.radius, second.n_a, second.n) == (3, 0.5, 1990, 2000)
    # the upper bound is the running minimum: U(1990, 2000) alone is 0.99920 > Phi(3)
    assert confidence_sequence_upper(1990, 2000, 0.001) > THRESHOLDS[2]
    assert second.p_a_upper == confidence_sequence_upper(990, 1000, 0.001)


def test_bounds_are_running_intersections():
    cert = decide([(1000, 1000), (1000, 2000)])  # lower 0.992 at 1000, upper 0.55 at 2000
    assert cert.p_a_lower == confidence_sequence_lower(1000, 1000, 0.001)
    assert cert.p_a_upper == confidence_sequence_upper(1000, 2000, 0.001)
    assert cert.status == (CERTIFIED, CERTIFIED, IMPOSSIBLE, IMPOSSIBLE)
    assert cert.radius == 0.5


def test_unreachable_within_the_budget():
    # lower 0.9532 >= Phi(1); upper 0.9940 >= Phi(2); but 1974 of 2000 (the rest at the upper
    # bound's rate) gives a lower bound below 0.9764 < Phi(2)
    cert = decide([(980, 1000)], n_max=2000)
    assert cert.status == (CERTIFIED, UNREACHABLE, IMPOSSIBLE, IMPOSSIBLE)
    assert cert.stop_reason == STOP_N_MAX and cert.stopped and not cert.decided
    assert cert.radius == 0.25
    # with a larger budget the same counts leave radius 0.5 open
    assert decide([(980, 1000)], n_max=4000).status[1] == UNDECIDED
    # at n_max nothing is reachable any more
    cert = decide([(990, 1000)], n_max=1000)
    assert cert.status == (CERTIFIED, UNREACHABLE, IMPOSSIBLE, IMPOSSIBLE)
    assert cert.stop_reason == STOP_N_MAX


def test_tv_bound_is_subtracted_and_added():
    tv = 0.01
    cert = decide([(990, 1000), (1990, 2000)], tv_bound=tv)
    assert cert.p_a_lower == confidence_sequence_lower(1990, 2000, 0.001) - tv  # 0.9744
    assert cert.p_a_upper == confidence_sequence_upper(990, 1000, 0.001) + tv
    # Phi(2) is no longer certified; Phi(3) + tv > 1 can never be reached, nor can Phi(4)
    assert cert.status == (CERTIFIED, UNDECIDED, UNREACHABLE, UNREACHABLE)
    assert cert.radius == 0.25 and cert.stop_reason == CONTINUE


def test_radius_zero_needs_more_than_one_half():
    lower = confidence_sequence_lower(600, 1000, 0.001)  # 0.5242
    tv = lower - 0.5
    assert lower - tv == 0.5
    cert = decide([(600, 1000)], radii=(0.0, 0.25), tv_bound=tv)
    assert cert.status[0] != CERTIFIED and cert.abstained  # exactly 1/2 certifies nothing
    cert = decide([(600, 1000)], radii=(0.0, 0.25), tv_bound=tv * 0.99)
    assert cert.status[0] == CERTIFIED and (cert.prediction, cert.radius) == (3, 0.0)
    assert not cert.abstained


# ------------------------------------------------------------------------------------------------
# the driver


def vote_stream(p_top: float, n: int, classes: int, top: int, seed: int) -> np.ndarray:
    """Per-draw votes: ``top`` with probability p_top, else uniform over the other classes."""
    rng = np.random.default_rng(seed)
    others = np.array([c for c in range(classes) if c != top])
    votes = others[rng.integers(0, others.size, n)]
    votes[rng.random(n) < p_top] = top
    return votes


class Drawer:
    """draw(offset, size) over a fixed vote stream, recording the calls."""

    def __init__(self, votes: np.ndarray, classes: int):
        self.votes, self.classes, self.calls = votes, classes, []

    def __call__(self, offset: int, size: int) -> np.ndarray:
        self.calls.append((offset, size))
        return np.bincount(self.votes[offset : offset + size], minlength=self.classes)


@pytest.mark.parametrize("p_top", [0.99, 0.9986])
def test_driver_result_is_the_same_for_every_batch(p_top):
    n_max = 16_000
    votes = vote_stream(p_top, n_max, classes=4, top=1, seed=7)
    selection = np.array([3, 5, 5, 0])  # tie between 1 and 2: the lowest index, 1, is the guess
    results = []
    for batch in (None, 1, 7, 999, 1000, 4096):
        drawer = Drawer(votes, 4)
        results.append(
            certify_sequential(selection, drawer, SIGMA, RADII, 0.001, 0.0, n_max, batch)
        )
        # draws are requested in order, never beyond the stop, in calls of at most `batch`
        offsets = [o for o, _ in drawer.calls]
        ends = [o + s for o, s in drawer.calls]
        assert offsets == [0, *ends[:-1]] and ends[-1] == results[-1].n
        assert batch is None or max(s for _, s in drawer.calls) <= batch
        # every checkpoint up to the stop ends a call: no call straddles a check
        assert {t for t in checkpoints(n_max) if t <= results[-1].n} <= set(ends)
    assert all(r == results[0] for r in results)
    cert = results[0]
    assert cert.n in checkpoints(n_max) and cert.n_a == int((votes[: cert.n] == 1).sum())
    history = [(int((votes[:t] == 1).sum()), t) for t in checkpoints(n_max) if t <= cert.n]
    assert cert == sequential_decision(1, history, SIGMA, RADII, 0.001, 0.0, n_max)
    if p_top == 0.99:  # decided long before n_max: radius 0.5 (the fixed-n radius at 1e5: 0.57)
        assert cert.stop_reason == STOP_DECIDED and cert.radius == 0.5 and cert.n <= 4000
    else:  # just below Phi(3): 16,000 draws could not certify Phi(3) at alpha 0.001, as
        # 4,500 draws already show; the loop stops there, not at n_max
        assert cert.stop_reason == STOP_N_MAX and cert.radius == 0.5 and cert.n == 4500
        assert cert.status == (CERTIFIED, CERTIFIED, UNREACHABLE, IMPOSSIBLE)


def test_driver_abstains_for_a_wrong_guess():
    votes = vote_stream(0.95, 8000, classes=3, top=0, seed=1)
    cert = certify_sequential(np.array([0, 9, 1]), Drawer(votes, 3), SIGMA, RADII, 0.001)
    assert cert.abstained and cert.stop_reason == STOP_DECIDED and cert.n == 1000
    assert cert.status == (IMPOSSIBLE,) * 4


# ------------------------------------------------------------------------------------------------
# input validation


def test_bound_input_errors():
    with pytest.raises(IntSmoothError, match="at least one draw"):
        confidence_sequence_lower(0, 0, 0.05)
    with pytest.raises(IntSmoothError, match="must lie in 0..n"):
        confidence_sequence_upper(11, 10, 0.05)
    with pytest.raises(IntSmoothError, match="expected an integer count"):
        confidence_sequence_lower(5.0, 10, 0.05)
    with pytest.raises(IntSmoothError, match=r"must lie in \(0, 1\)"):
        confidence_sequence_lower(5, 10, 1.0)
    with pytest.raises(IntSmoothError, match=r"lies in \[0, 1\]"):
        mixture_log_martingale(1.5, 5, 10)
    with pytest.raises(IntSmoothError, match="at least one estimation draw"):
        checkpoints(0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"radii": []}, "radii is empty"),
        ({"radii": (0.5, 0.25)}, "strictly increasing"),
        ({"radii": (0.25, 0.25)}, "strictly increasing"),
        ({"radii": (-0.1, 0.25)}, "finite number >= 0"),
        ({"radii": (0.25, float("nan"))}, "finite number >= 0"),
        ({"radii": "0.25"}, "sequence of radii"),
        ({"radii": ("a",)}, "expected a number"),
        ({"sigma": 0.0}, "positive number"),
        ({"alpha": 0.0}, r"must lie in \(0, 1\)"),
        ({"tv_bound": 1.0}, r"must lie in \[0, 1\)"),
        ({"n_max": 500}, "beyond n_max = 500"),
    ],
)
def test_decision_input_errors(kwargs, message):
    with pytest.raises(IntSmoothError, match=message):
        decide([(990, 1000)], **kwargs)


@pytest.mark.parametrize(
    "history, message",
    [
        ([], "non-empty list"),
        ((990, 1000), "expected a pair"),
        ([(990,)], "expected a pair"),
        ([(990, 1000), (991, 1000)], "each check adds draws"),
        ([(990, 1000), (989, 2000)], "each check adds draws"),
        ([(990, 1000), (1991, 2000)], "each check adds draws"),
        ([(1001, 1000)], "must lie in 0..n"),
    ],
)
def test_history_errors(history, message):
    with pytest.raises(IntSmoothError, match=message):
        decide(history)
    with pytest.raises(IntSmoothError, match="class index"):
        sequential_decision(-1, [(1, 2)], SIGMA, RADII, 0.001)


@pytest.mark.parametrize(
    "draw, message",
    [
        (lambda offset, size: np.array([size, 0]), "expected integer counts of shape"),
        (lambda offset, size: np.array([size, 0, 0], dtype=float), "expected integer counts"),
        (lambda offset, size: np.array([size, 1, 0]), "expected 1000 votes"),
        (lambda offset, size: np.array([size + 1, -1, 0]), "smallest -1"),
        ("not a function", "expected a function draw"),
    ],
)
def test_driver_draw_errors(draw, message):
    with pytest.raises(IntSmoothError, match=message):
        certify_sequential(np.array([5, 1, 0]), draw, SIGMA, RADII, 0.001)


def test_driver_argument_errors():
    draw = Drawer(np.zeros(1000, dtype=np.int64), 2)
    with pytest.raises(IntSmoothError, match="batches of >= 1"):
        certify_sequential(np.array([5, 1]), draw, SIGMA, RADII, 0.001, batch=0)
    with pytest.raises(IntSmoothError, match="expected an integer count"):
        certify_sequential(np.array([5, 1]), draw, SIGMA, RADII, 0.001, batch=10.0)
    with pytest.raises(IntSmoothError, match="sums to 0"):
        certify_sequential(np.array([0, 0]), draw, SIGMA, RADII, 0.001)
    with pytest.raises(IntSmoothError, match="at least one estimation draw"):
        certify_sequential(np.array([5, 1]), draw, SIGMA, RADII, 0.001, n_max=0)
    assert draw.calls == []
