"""Anytime-valid sequential certification at chosen radii, as pure functions of vote counts.

Cohen et al.'s CERTIFY draws a fixed number n of estimation samples (100,000 in the paper) and
reports the radius its Clopper-Pearson bound allows. When only a few radii matter (the columns of
a certified-accuracy table), most inputs are decided long before that: a clear pA certifies the
largest reachable radius after a few thousand draws, and a pA far below the next radius's
threshold shows that radius to be out of reach just as early. Stopping as soon as the answer is
known is *optional stopping*, and the fixed-n Clopper-Pearson bound is not valid under it
(re-checking it after every batch certifies wrong radii far more often than alpha:
``tests/test_sequential_soundness_audit.py`` measures this). This module uses a confidence
*sequence* instead, a bound valid simultaneously at every sample size:

- :func:`mixture_log_martingale`: the beta-binomial mixture martingale M_t(p0) (Robbins 1970;
  Howard, Ramdas, McAuliffe, Sekhon 2021). For every p0 it is a nonnegative martingale with
  M_0 = 1 when the draws are Bernoulli(p0), so by Ville's inequality P(exists t: M_t(p) >= 1/alpha)
  <= alpha for the true p;
- :func:`confidence_sequence_lower` and :func:`confidence_sequence_upper`: the two ends of
  {p0 : M_t(p0) < 1/alpha}, which contain the true p at all t at once with probability >= 1 - alpha;
- :func:`sequential_decision`: for sorted radii r with thresholds Phi(r / sigma), which radii are
  certified, which are out of reach, and whether to stop;
- :func:`certify_sequential`: drives the loop, drawing estimation samples up to the checkpoints of
  :func:`checkpoints` (1,000, 1,500, 2,000, 2,500, 3,500, ..., each about 1.25 times the last,
  capped at ``n_max``: documented constants, never the model's batch size, so the rows are the
  same for every batch size of the compiled function).

The sampler's TV bound enters exactly as in :func:`tvm_intsmooth.certify.cohen.certify`: it is
subtracted once from the lower bound (and added to the upper bound), whatever the number of draws
(docs/soundness.md, sections 3 and 8). Nothing here needs TVM.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import betaln, ndtr, xlog1py, xlogy

from tvm_intsmooth.certify.cohen import (
    ABSTAIN,
    _as_float,
    _check_alpha,
    _check_count,
    _check_counts,
)
from tvm_intsmooth.errors import IntSmoothError

# The mixing distribution of the martingale: Beta(MIXTURE_A, MIXTURE_B). Any fixed Beta prior is
# valid. Most inputs worth certifying have pA close to 1, where a prior with mass near 1 pays off:
# with every draw for the guess, Beta(1, 0.1) certifies Phi(3) (radius 3 sigma) at alpha = 0.001
# after 5,793 draws, Jeffreys' Beta(1/2, 1/2) after 8,904 (fixed-n Clopper-Pearson: 5,114), while
# for pA in 0.84..0.98 at n = 10,000 both bounds are within 2e-4 of each other. The upper bound
# of (n_a, n) is 1 minus the lower bound of (n - n_a, n) under the mirrored prior Beta(b, a).
MIXTURE_A = 1.0
MIXTURE_B = 0.1

# The schedule of checks: FIRST_CHECKPOINT estimation draws, then CHECKPOINT_GROWTH times the
# previous check rounded up to a multiple of CHECKPOINT_STEP, the last check at n_max. Checking
# more often costs nothing in validity (the bounds hold at every n at once) and little time on the
# host (two root finds per check), but a check drawn far beyond the point where the answer became
# known wastes draws: growth 1.25 overshoots by 12% on average, growth 2 by 50%.
FIRST_CHECKPOINT = 1000
CHECKPOINT_GROWTH = 1.25
CHECKPOINT_STEP = 500

# Every bound is moved outwards by BOUND_SLACK after the root find, so that the floating-point error
# of the root (about 1e-15) can never make it optimistic.
BOUND_SLACK = 1e-12

# Per-radius status in SequentialCertificate.status: the lower bound (after the TV bound) reached
# the radius's threshold; the upper bound (after the TV bound) is below it; even if the draws left
# up to n_max voted for the guess at the rate of the upper bound, no remaining check could certify
# it; none of these yet.
CERTIFIED = "certified"
IMPOSSIBLE = "impossible"
UNREACHABLE = "unreachable"
UNDECIDED = "undecided"

# SequentialCertificate.stop_reason: every listed radius certified or impossible (more draws would
# not change the answer, with probability >= 1 - alpha); nothing undecided but some radius only
# unreachable within n_max draws; an interim result (draw more; still a valid certificate).
STOP_DECIDED = "decided"
STOP_N_MAX = "n_max"
CONTINUE = "continue"


@dataclass(frozen=True)
class SequentialCertificate:
    """The outcome of sequential certification at chosen radii for one input.

    ``prediction`` is the guessed class if at least one listed radius is certified, otherwise
    ``ABSTAIN`` (-1); ``radius`` is the largest certified listed radius (0.0 when abstaining; a
    listed radius 0.0 can be certified, which certifies the prediction only). ``p_a_lower`` and
    ``p_a_upper`` are the confidence sequence's bounds on the guessed class's probability, running
    intersection over all checks so far, after subtracting (adding) the sampler's TV bound.
    ``n_a`` is the guessed class's count among the ``n`` estimation draws. ``radii`` are the listed
    radii and ``status`` says for each whether it is ``"certified"``, ``"impossible"`` (the upper
    bound is below its threshold), ``"unreachable"`` (even if the draws left up to n_max voted for
    the guess at the rate of the upper bound, no further check could certify it) or
    ``"undecided"``. ``stop_reason`` is
    ``"decided"`` (every radius certified or impossible: more draws would not change the answer),
    ``"n_max"`` (nothing undecided, but some radius only unreachable within the budget) or
    ``"continue"`` (an interim result: some radius is undecided).

    Because the bounds hold at every sample size at once, the certificate is valid whenever the
    loop stops, interim results included: with probability at least 1 - alpha, every certified
    radius is a true certified radius of the smoothed classifier.
    """

    prediction: int
    radius: float
    p_a_lower: float
    p_a_upper: float
    n_a: int
    n: int
    radii: tuple[float, ...]
    status: tuple[str, ...]
    stop_reason: str

    @property
    def abstained(self) -> bool:
        """Whether no listed radius was certified."""
        return self.prediction == ABSTAIN

    @property
    def decided(self) -> bool:
        """Whether every listed radius is certified or out of reach."""
        return self.stop_reason == STOP_DECIDED

    @property
    def stopped(self) -> bool:
        """Whether the loop stops here (decided, or n_max spent)."""
        return self.stop_reason != CONTINUE


def _check_trials(n_a: int, n: int) -> tuple[int, int]:
    n_a = _check_count("n_a", n_a)
    n = _check_count("n", n)
    if n < 1:
        raise IntSmoothError(f"n = {n}: at least one draw is needed")
    if not 0 <= n_a <= n:
        raise IntSmoothError(f"n_a = {n_a} with n = {n}: the count must lie in 0..n")
    return n_a, n


def mixture_log_martingale(p0: float | np.ndarray, n_a: int, n: int) -> float | np.ndarray:
    """log M_n(p0), the beta-binomial mixture martingale after ``n_a`` successes in ``n`` draws.

    ``M_n(p0) = B(a + n_a, b + n - n_a) / B(a, b) / (p0^n_a (1 - p0)^(n - n_a))`` with
    a = ``MIXTURE_A``, b = ``MIXTURE_B``: the likelihood ratio of Bernoulli(p) against
    Bernoulli(p0), averaged over p ~ Beta(a, b). ``p0`` may be an array of values in [0, 1]
    (+inf where a success or failure was seen that p0 makes impossible).
    """
    n_a, n = _check_trials(n_a, n)
    p0 = np.asarray(p0, dtype=np.float64)
    if np.any(~((p0 >= 0.0) & (p0 <= 1.0))):
        raise IntSmoothError(f"p0 = {p0}: a Bernoulli mean lies in [0, 1]")
    with np.errstate(divide="ignore"):
        value = (
            betaln(MIXTURE_A + n_a, MIXTURE_B + n - n_a)
            - betaln(MIXTURE_A, MIXTURE_B)
            - xlogy(n_a, p0)
            - xlog1py(n - n_a, -p0)
        )
    return float(value) if value.ndim == 0 else value


def _lower_root(k: int, t: int, a: float, b: float, log_level: float) -> float:
    """The smallest p0 with log M_t(p0) < log_level under a Beta(a, b) mixture, minus the slack.

    log M_t(p0) = c - k log p0 - (t - k) log(1 - p0) is convex in p0 with its minimum at k / t,
    where M_t <= 1 (the maximum likelihood beats every average of likelihoods): on (0, k / t] it
    decreases from +inf to below log_level, so the set {M_t < 1/alpha} is an interval and its
    lower end is the one root there.
    """
    from scipy.optimize import brentq  # imported here: it adds 0.15 s to the CLI's start-up

    if k == 0:
        return 0.0
    c = float(betaln(a + k, b + t - k) - betaln(a, b)) - log_level
    failures = t - k

    def excess(p0: float) -> float:  # log M_t(p0) - log_level, decreasing on (0, k / t]
        return c - k * math.log(p0) - (failures * math.log1p(-p0) if failures else 0.0)

    p_hat = k / t
    if excess(p_hat) >= 0.0:  # cannot happen (M_t(k / t) <= 1 < 1/alpha); kept as a guard
        raise AssertionError(f"mixture martingale >= 1/alpha at its minimum (k={k}, t={t})")
    low = p_hat
    while True:
        low *= 0.1  # excess grows like -k log(p0): a few steps at most
        if low < 1e-300:  # only for absurd alpha such as 1e-300: 0 is always a valid bound
            return 0.0
        if excess(low) > 0.0:
            break
    root = brentq(excess, low, p_hat, xtol=1e-15, rtol=4 * np.finfo(float).eps)
    return max(0.0, root - BOUND_SLACK)


def confidence_sequence_lower(n_a: int, n: int, alpha: float) -> float:
    """Anytime-valid lower confidence bound on a Bernoulli mean after ``n_a`` of ``n`` successes.

    The lower end of the confidence sequence {p0 : M_n(p0) < 1/alpha}
    (:func:`mixture_log_martingale`): the root of log M_n(p0) = log(1/alpha) on [0, n_a / n],
    found with Brent's method in log space and moved down by ``BOUND_SLACK``; 0 when n_a = 0.
    With probability at least 1 - alpha it is below the true mean at *every* n simultaneously
    (Ville's inequality), so it stays valid when the number of draws depends on the draws.

    This is the two-sided mixture set intersected with p0 <= n_a / n. A one-sided mixture (a
    prior on p >= p0 only) would be slightly tighter; the two-sided one is used because its lower
    and upper ends then hold *jointly* at level alpha, and because {M_n < 1/alpha} is provably
    an interval (log M_n is convex in p0), so the root find cannot miss a piece of the set.
    """
    n_a, n = _check_trials(n_a, n)
    alpha = _check_alpha(alpha)
    return _lower_root(n_a, n, MIXTURE_A, MIXTURE_B, -math.log(alpha))


def confidence_sequence_upper(n_a: int, n: int, alpha: float) -> float:
    """Anytime-valid upper confidence bound on a Bernoulli mean after ``n_a`` of ``n`` successes.

    The upper end of the same confidence sequence as :func:`confidence_sequence_lower` (root on
    [n_a / n, 1], moved up by ``BOUND_SLACK``; 1 when n_a = n), computed as one minus the lower
    bound of the failures under the mirrored prior so that values near 1 keep their precision.
    Both ends hold together: with probability at least 1 - alpha the true mean lies between them
    at every n.
    """
    n_a, n = _check_trials(n_a, n)
    alpha = _check_alpha(alpha)
    return min(1.0, 1.0 - _lower_root(n - n_a, n, MIXTURE_B, MIXTURE_A, -math.log(alpha)))


def checkpoints(n_max: int) -> tuple[int, ...]:
    """The numbers of estimation draws at which the bounds are checked.

    ``FIRST_CHECKPOINT``, then ``CHECKPOINT_GROWTH`` times the previous one rounded up to a
    multiple of ``CHECKPOINT_STEP``, capped at and ending with ``n_max`` (1000, 1500, 2000, 2500,
    3500, 4500, 6000, 7500, 9500, 12000, ..., 74000, 92500, 100000 for n_max = 100,000: 20 checks;
    just (n_max,) when n_max <= 1000). They depend on these constants and on n_max only, never on
    the batch size of the compiled function, so a fixed seed gives the same result for every
    batch size.
    """
    n_max = _check_count("n_max", n_max)
    if n_max < 1:
        raise IntSmoothError(f"n_max = {n_max}: at least one estimation draw is needed")
    points = []
    point = FIRST_CHECKPOINT
    while point < n_max:
        points.append(point)
        point = math.ceil(point * CHECKPOINT_GROWTH / CHECKPOINT_STEP) * CHECKPOINT_STEP
    points.append(n_max)
    return tuple(points)


def _check_sigma(sigma: float) -> float:
    sigma = _as_float("sigma", sigma)
    if not (math.isfinite(sigma) and sigma > 0.0):
        raise IntSmoothError(f"sigma = {sigma}: the noise level must be a positive number")
    return sigma


def _check_tv_bound(tv_bound: float) -> float:
    tv_bound = _as_float("tv_bound", tv_bound)
    if not 0.0 <= tv_bound < 1.0:
        raise IntSmoothError(f"tv_bound = {tv_bound}: the sampler's TV bound must lie in [0, 1)")
    return tv_bound


def _check_radii(radii: Sequence[float]) -> tuple[float, ...]:
    if isinstance(radii, (str, bytes)) or not hasattr(radii, "__len__"):
        raise IntSmoothError(f"radii = {radii!r}: expected a sequence of radii, e.g. [0.25, 0.5]")
    values = tuple(_as_float("a radius", r) for r in radii)
    if not values:
        raise IntSmoothError("radii is empty: list at least one radius to certify")
    bad = [r for r in values if not (math.isfinite(r) and r >= 0.0)]
    if bad:
        raise IntSmoothError(f"radii hold {bad[0]}: every radius must be a finite number >= 0")
    if any(b <= a for a, b in zip(values, values[1:], strict=False)):
        raise IntSmoothError(
            f"radii = {list(values)}: list the radii in strictly increasing order, without repeats"
        )
    return values


def check_radii(radii: Sequence[float]) -> tuple[float, ...]:
    """``radii`` as a tuple of floats if they are finite, >= 0 and strictly increasing, else one
    clear IntSmoothError (what :func:`certify_sequential` requires; check before drawing)."""
    return _check_radii(radii)


def _certifies(p_a_lower: float, threshold: float) -> bool:
    return p_a_lower >= threshold and p_a_lower > 0.5


def _best_future_lower(n_a: int, n: int, upper: float, alpha: float, n_max: int) -> float:
    """The best lower bound a remaining check could reach if the draws left voted for the guess
    at the rate of the upper bound ``upper`` (rounded up; all of them when ``upper`` is 1): at
    checkpoint t, ``n_a + ceil(upper (t - n))`` of t. -inf when no check is left.

    With probability at least 1 - alpha the draws' true rate is at most ``upper``, so a radius
    this cannot certify is one that n_max draws would certify only by luck. Giving it up is a
    budget decision, never a certificate: stopping is safe at any time (module docstring).
    """
    log_level = -math.log(alpha)
    return max(
        (
            _lower_root(
                n_a + min(t - n, math.ceil(upper * (t - n))), t, MIXTURE_A, MIXTURE_B, log_level
            )
            for t in checkpoints(n_max)
            if t > n
        ),
        default=-math.inf,
    )


def _decide(
    guess: int,
    n_a: int,
    n: int,
    lower: float,
    upper: float,
    radii: tuple[float, ...],
    sigma: float,
    alpha: float,
    tv_bound: float,
    n_max: int,
) -> SequentialCertificate:
    """The decision from the running bounds ``lower``, ``upper`` (before the TV bound)."""
    p_a_lower = lower - tv_bound
    p_a_upper = upper + tv_bound
    thresholds = [float(ndtr(r / sigma)) for r in radii]
    status = []
    best_future: float | None = None  # the best lower bound the remaining checks could reach
    for threshold in thresholds:
        if _certifies(p_a_lower, threshold):
            status.append(CERTIFIED)
            continue
        if p_a_upper < threshold:
            status.append(IMPOSSIBLE)
            continue
        if best_future is None:
            best_future = _best_future_lower(n_a, n, upper, alpha, n_max) - tv_bound
        status.append(UNDECIDED if _certifies(best_future, threshold) else UNREACHABLE)
    certified = [r for r, s in zip(radii, status, strict=True) if s == CERTIFIED]
    if UNDECIDED in status:  # never at n = n_max: no check is left, so nothing is reachable
        stop_reason = CONTINUE
    elif UNREACHABLE in status:
        stop_reason = STOP_N_MAX
    else:
        stop_reason = STOP_DECIDED
    return SequentialCertificate(
        prediction=guess if certified else ABSTAIN,
        radius=certified[-1] if certified else 0.0,
        p_a_lower=p_a_lower,
        p_a_upper=p_a_upper,
        n_a=int(n_a),
        n=int(n),
        radii=radii,
        status=tuple(status),
        stop_reason=stop_reason,
    )


def sequential_decision(
    guess: int,
    history: Sequence[tuple[int, int]],
    sigma: float,
    radii: Sequence[float],
    alpha: float,
    tv_bound: float = 0.0,
    n_max: int = 100_000,
) -> SequentialCertificate:
    """Which listed radii the estimation counts so far certify, and whether to stop.

    ``history`` lists ``(n_a, n)`` at every check so far, in order (the guessed class won n_a of
    the first n estimation draws; n strictly increasing, the last entry the current counts).
    ``radii`` are listed in increasing order; radius r has threshold ``p_r = Phi(r / sigma)``.
    With L and U the running intersection of :func:`confidence_sequence_lower` /
    :func:`confidence_sequence_upper` over the history (max of lowers, min of uppers; valid since
    the sequence holds at all checks at once), a radius is

    - certified once ``L - tv_bound >= p_r`` (and ``> 1/2``, which matters for r = 0 only);
    - impossible once ``U + tv_bound < p_r``;
    - unreachable once even the best plausible case, the draws left up to ``n_max`` voting for
      the guess at the rate U (the true rate is at most U with probability >= 1 - alpha), could
      not certify it at any remaining checkpoint of :func:`checkpoints` (the lower bound of
      ``n_a + ceil(U (t - n))`` successes in t draws, for those t > n; at n = n_max none is
      left);
    - undecided otherwise.

    Certified radii form a prefix of the list and impossible or unreachable ones a suffix, so once
    no radius is undecided the largest certified radius cannot grow any more and the loop stops:
    ``stop_reason`` is ``"decided"``, or ``"n_max"`` when some radius is only unreachable
    within the budget (always the case at n = n_max unless all are decided). Impossible and
    unreachable radii only end the loop early; they never certify anything, so they cost no
    soundness. The checks are assumed to happen at the checkpoints only in this budget
    reasoning: checking elsewhere is just as valid.
    """
    guess = _check_count("guess", guess)
    if guess < 0:
        raise IntSmoothError(f"guess = {guess}: a class index is >= 0")
    sigma = _check_sigma(sigma)
    radii = _check_radii(radii)
    alpha = _check_alpha(alpha)
    tv_bound = _check_tv_bound(tv_bound)
    n_max = checkpoints(n_max)[-1]  # validates n_max
    if isinstance(history, (str, bytes)) or not hasattr(history, "__len__") or not history:
        raise IntSmoothError(
            f"history = {history!r}: expected a non-empty list of (n_a, n) counts, one per check"
        )
    lower, upper = 0.0, 1.0
    previous = (0, 0)
    for entry in history:
        try:
            n_a, n = entry
        except (TypeError, ValueError) as err:
            raise IntSmoothError(f"history entry {entry!r}: expected a pair (n_a, n)") from err
        n_a, n = _check_trials(n_a, n)
        if n <= previous[1] or n_a < previous[0] or n_a - previous[0] > n - previous[1]:
            raise IntSmoothError(
                f"history goes from (n_a, n) = {previous} to {(n_a, n)}: each check adds draws, "
                "and the guessed class's count grows by at most the number of new draws"
            )
        if n > n_max:
            raise IntSmoothError(f"history reaches n = {n}, beyond n_max = {n_max}")
        lower = max(lower, confidence_sequence_lower(n_a, n, alpha))
        upper = min(upper, confidence_sequence_upper(n_a, n, alpha))
        previous = (n_a, n)
    n_a, n = previous
    return _decide(guess, n_a, n, lower, upper, radii, sigma, alpha, tv_bound, n_max)


def certify_sequential(
    counts_selection: np.ndarray,
    draw: Callable[[int, int], np.ndarray],
    sigma: float,
    radii: Sequence[float],
    alpha: float,
    tv_bound: float = 0.0,
    n_max: int = 100_000,
    batch: int | None = None,
) -> SequentialCertificate:
    """Sequential CERTIFY at chosen radii: draw estimation samples until the answer is known.

    The guess is the top class of ``counts_selection`` (n0 draws from their own stream, as in
    :func:`tvm_intsmooth.certify.cohen.certify`; ties go to the lowest class index).
    ``draw(offset, size)`` returns the per-class vote counts of estimation draws
    ``offset .. offset + size - 1`` (an integer array shaped like ``counts_selection`` that sums
    to ``size``). Draws are requested in order, up to each checkpoint of :func:`checkpoints`, in
    calls of at most ``batch`` draws (``None``: one call per checkpoint); after each checkpoint
    :func:`sequential_decision` decides, and the loop ends when it stops. Since the checkpoints
    depend on documented constants and ``n_max`` only, and the counts of draws offset..offset+size-1
    do not depend on how they are split into calls, the result is the same for every ``batch``.
    """
    selection = _check_counts("counts_selection", counts_selection)
    sigma = _check_sigma(sigma)
    radii = _check_radii(radii)
    alpha = _check_alpha(alpha)
    tv_bound = _check_tv_bound(tv_bound)
    schedule = checkpoints(n_max)
    if batch is not None:
        batch = _check_count("batch", batch)
        if batch < 1:
            raise IntSmoothError(f"batch = {batch}: draws are requested in batches of >= 1")
    if not callable(draw):
        raise IntSmoothError(f"draw = {draw!r}: expected a function draw(offset, size) -> counts")
    guess = int(np.argmax(selection))
    log_level = -math.log(alpha)
    n_a = n = 0
    lower, upper = 0.0, 1.0
    for checkpoint in schedule:
        while n < checkpoint:
            size = checkpoint - n if batch is None else min(batch, checkpoint - n)
            counts = np.asarray(draw(n, size))
            if counts.shape != selection.shape or not np.issubdtype(counts.dtype, np.integer):
                raise IntSmoothError(
                    f"draw({n}, {size}) returned {counts.dtype} counts of shape {counts.shape}: "
                    f"expected integer counts of shape {selection.shape}, like counts_selection"
                )
            if counts.min() < 0 or int(counts.sum()) != size:
                raise IntSmoothError(
                    f"draw({n}, {size}) returned counts summing to {int(counts.sum())} "
                    f"(smallest {counts.min()}): expected {size} votes, one per draw"
                )
            n_a += int(counts[guess])
            n += size
        lower = max(lower, _lower_root(n_a, n, MIXTURE_A, MIXTURE_B, log_level))
        upper = min(upper, 1.0 - _lower_root(n - n_a, n, MIXTURE_B, MIXTURE_A, log_level))
        result = _decide(guess, n_a, n, lower, upper, radii, sigma, alpha, tv_bound, schedule[-1])
        if result.stopped:
            return result
    raise AssertionError("the last checkpoint is n_max, where the loop always stops")
