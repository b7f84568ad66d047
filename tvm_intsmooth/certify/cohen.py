"""Cohen et al.'s (2019) CERTIFY and PREDICT as pure functions of vote counts.

These follow the reference implementation (locuslab/smoothing, ``code/core.py``) step for step:
the top class of the selection counts, a one-sided Clopper-Pearson lower bound on its probability
from the estimation counts, abstention when that bound is below 1/2 (the reference's
``if pABar < 0.5``), and the radius ``sigma * Phi^-1(pA_lower)``. The one addition is ``tv_bound``:
the total variation distance between the integer sampler and the exact noise distribution
(docs/soundness.md, section 3), which is subtracted from the lower bound so that the certificate
stays sound for the distribution that was actually sampled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import betaincinv, ndtri  # = scipy.stats' beta.ppf, norm.ppf, bit for bit

from tvm_intsmooth.errors import IntSmoothError

ABSTAIN = -1


@dataclass(frozen=True)
class Certificate:
    """The outcome of CERTIFY for one input.

    ``prediction`` is the certified class, or ``ABSTAIN`` (-1) with ``radius`` 0.0. ``p_a_lower`` is
    the lower bound on the top class's probability after subtracting the sampler's TV bound;
    ``n_a`` is that class's count among the ``n`` estimation draws.
    """

    prediction: int
    radius: float
    p_a_lower: float
    n_a: int
    n: int

    @property
    def abstained(self) -> bool:
        """Whether CERTIFY abstained."""
        return self.prediction == ABSTAIN


def _as_float(name: str, value: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError) as err:
        raise IntSmoothError(f"{name} = {value!r}: expected a number") from err


def _check_alpha(alpha: float) -> float:
    alpha = _as_float("alpha", alpha)
    if not 0.0 < alpha < 1.0:
        raise IntSmoothError(f"alpha = {alpha}: the failure probability must lie in (0, 1)")
    return alpha


def _check_count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise IntSmoothError(f"{name} = {value!r}: expected an integer count")
    return int(value)


def _check_counts(name: str, counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts)
    if counts.ndim != 1 or counts.size == 0:
        raise IntSmoothError(
            f"{name} has shape {counts.shape}: expected a non-empty 1-D array of per-class counts"
        )
    if not np.issubdtype(counts.dtype, np.integer):
        raise IntSmoothError(f"{name} has dtype {counts.dtype}: expected integer vote counts")
    if counts.min() < 0:
        raise IntSmoothError(f"{name} holds a negative count ({counts.min()}); counts are >= 0")
    if int(counts.sum()) < 1:
        raise IntSmoothError(f"{name} sums to 0: at least one draw (n >= 1) is needed")
    return counts.astype(np.int64)


def lower_confidence_bound(n_a: int, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper-Pearson lower bound on a binomial proportion.

    Equal to ``statsmodels.stats.proportion.proportion_confint(n_a, n, alpha=2 * alpha,
    method="beta")[0]``, the bound the reference uses: the ``alpha`` quantile of
    Beta(n_a, n - n_a + 1), and 0 when ``n_a`` is 0.
    """
    n_a = _check_count("n_a", n_a)
    n = _check_count("n", n)
    alpha = _check_alpha(alpha)
    if n < 1:
        raise IntSmoothError(f"n = {n}: at least one draw is needed")
    if not 0 <= n_a <= n:
        raise IntSmoothError(f"n_a = {n_a} with n = {n}: the count must lie in 0..n")
    if n_a == 0:
        return 0.0
    return float(betaincinv(n_a, n - n_a + 1, alpha))


def certify(
    counts_selection: np.ndarray,
    counts_estimation: np.ndarray,
    sigma: float,
    alpha: float,
    tv_bound: float = 0.0,
) -> Certificate:
    """Cohen et al.'s CERTIFY from the n0 selection counts and the n estimation counts.

    The guess is the top class of ``counts_selection`` (ties go to the lowest class index);
    ``pA_lower`` is the Clopper-Pearson lower bound on its count in ``counts_estimation`` minus
    ``tv_bound``. Abstains when ``pA_lower < 0.5`` (the reference's comparison: exactly 1/2
    certifies radius 0), otherwise the radius is ``sigma * Phi^-1(pA_lower)``.
    """
    selection = _check_counts("counts_selection", counts_selection)
    estimation = _check_counts("counts_estimation", counts_estimation)
    if selection.shape != estimation.shape:
        raise IntSmoothError(
            f"counts_selection has {selection.size} classes but counts_estimation has "
            f"{estimation.size}: both must count the same classes"
        )
    guess = int(np.argmax(selection))
    return certify_count(
        guess, int(estimation[guess]), int(estimation.sum()), sigma, alpha, tv_bound
    )


def certify_count(
    guess: int, n_a: int, n: int, sigma: float, alpha: float, tv_bound: float = 0.0
) -> Certificate:
    """The estimation half of CERTIFY: the guessed class won ``n_a`` of ``n`` draws.

    Used by :func:`certify`, and to recompute a certificate from a results file's nA and n.
    """
    guess = _check_count("guess", guess)
    if guess < 0:
        raise IntSmoothError(f"guess = {guess}: a class index is >= 0")
    sigma = _as_float("sigma", sigma)
    if not (math.isfinite(sigma) and sigma > 0.0):
        raise IntSmoothError(f"sigma = {sigma}: the noise level must be a positive number")
    tv_bound = _as_float("tv_bound", tv_bound)
    if not 0.0 <= tv_bound < 1.0:
        raise IntSmoothError(f"tv_bound = {tv_bound}: the sampler's TV bound must lie in [0, 1)")
    p_a_lower = lower_confidence_bound(n_a, n, alpha) - tv_bound
    if p_a_lower < 0.5:
        return Certificate(ABSTAIN, 0.0, p_a_lower, int(n_a), int(n))
    return Certificate(guess, sigma * float(ndtri(p_a_lower)), p_a_lower, int(n_a), int(n))


def predict(counts: np.ndarray, alpha: float) -> int:
    """Cohen et al.'s PREDICT: the top class if it beats the runner-up, else ``ABSTAIN`` (-1).

    Two-sided binomial test of the top two counts at p = 1/2 (``scipy.stats.binomtest``);
    abstains when the p-value exceeds ``alpha``. Ties between classes go to the lowest index.
    """
    from scipy.stats import binomtest  # imported here: scipy.stats takes a second to load

    counts = _check_counts("counts", counts)
    alpha = _check_alpha(alpha)
    if counts.size < 2:
        raise IntSmoothError("counts has a single class: PREDICT needs at least two classes")
    order = np.argsort(-counts, kind="stable")
    count1, count2 = int(counts[order[0]]), int(counts[order[1]])
    if binomtest(count1, count1 + count2, p=0.5).pvalue > alpha:
        return ABSTAIN
    return int(order[0])
