"""The rounded Gaussian noise (docs/soundness.md, section 2), as a table of integer thresholds.

At a grid point, Gaussian noise e ~ N(0, sigma^2) followed by rounding to the grid of step s moves
the pixel by the integer k = round(e / s), whose distribution is

    p(k) = Phi((k + 1/2) s / sigma) - Phi((k - 1/2) s / sigma) = F(k) - F(k - 1),

with F(j) = Phi((j + 1/2) s / sigma) the CDF of k. The integer sampler draws a b-bit uniform integer
U and returns k = -K + #{j : T_j <= U}, with thresholds T_j = round(2^b F(j)) for j = -K..K-1. So it
draws exactly the distribution p_impl(k) = (T_k - T_{k-1}) / 2^b (T_{-K-1} = 0, T_K = 2^b) on
-K..K, which differs from p as follows. With d_j = T_j / 2^b - F(j) and the truncated tail mass
t = P(|k| > K) = 2 F(-K-1), each d_j enters p_impl - p twice (in k = j and k = j + 1) and the
tails add t, so

    TV(p_impl, p) <= sum_j |d_j| + t  <=  (2K) 2^-(b+1) + t.

:meth:`NoiseTable.tv_per_coordinate` reports sum_j |d_j| + t, evaluated (not just bounded by the
right-hand side) and rounded up. Noise for n coordinates is a product of independent coordinates,
and TV is subadditive over products, so :meth:`NoiseTable.tv_bound` is n times that.

The thresholds are symmetric: T_j = 2^b - T_{-j-1} (computed from the left half), so p_impl is
symmetric too. F is evaluated in decimal arithmetic with about 50 significant digits (the Taylor
series of Phi, with working precision raised in the tails where it cancels), because doubles
carry only 2^-53 relative precision while the thresholds need 2^-64 absolute precision; the
computation error (below 1e-45 per value) is added to the bound.

The discrete Gaussian (the seed paper's noise) is deliberately not here: its certificate is not
derived in this project, so no sampler for it is offered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction

import numpy as np

from tvm_intsmooth.errors import IntSmoothError

DEFAULT_STEP = Fraction(1, 255)
SUPPORTED_BITS = (32, 64)
MAX_K = 32767  # noise values are int16
MIN_TAIL = Fraction(1, 2**500)
_TARGET_DIGITS = 50  # relative precision of every CDF value
_COMPUTATION_ERROR = Decimal("1e-45")  # generous bound on one CDF value's absolute error
_ASYMPTOTIC_FROM = 20  # normal_upper_tail switches to the asymptotic series from here


def _decimal_pi() -> Decimal:
    """pi to the current decimal precision (the series recipe of Python's decimal docs)."""
    with localcontext() as ctx:
        ctx.prec += 2
        three = Decimal(3)
        last, t, s, n, na, d, da = 0, three, three, 1, 0, 0, 24
        while s != last:
            last = s
            n, na = n + na, na + 8
            d, da = d + da, da + 32
            t = (t * n) / d
            s += t
    return +s


def normal_upper_tail(x: Fraction) -> Decimal:
    """Q(x) = 1 - Phi(x) = Phi(-x) for x >= 0, to about 50 significant digits.

    Uses Phi(x) = 1/2 + phi(x) * sum_n x^(2n+1) / (2n+1)!!, whose terms are all positive; the
    cancellation in 1/2 - phi(x) * sum costs about x^2 / (2 ln 10) digits, which the working
    precision adds on.
    """
    if x < 0:
        raise ValueError(f"normal_upper_tail needs x >= 0, got {x}")
    if x >= _ASYMPTOTIC_FROM:
        return _normal_upper_tail_asymptotic(x)
    x_squared = float(x) ** 2
    with localcontext() as ctx:
        ctx.prec = _TARGET_DIGITS + 10 + int(x_squared / (2 * math.log(10))) + 1
        xd = Decimal(x.numerator) / Decimal(x.denominator)
        x2 = xd * xd
        term = xd
        total = xd
        n = 0
        tiny = Decimal(10) ** -(ctx.prec + 2)
        # Once 2n + 3 > 2 x^2 the term ratio x^2 / (2n + 3) is below 1/2, so the rest of the
        # series is below the last term.
        while term > total * tiny or 2 * n + 3 <= 2 * x2:
            n += 1
            term = term * x2 / (2 * n + 1)
            total += term
        density = (-x2 / 2).exp() / (2 * _decimal_pi()).sqrt()
        return Decimal("0.5") - density * total


def _normal_upper_tail_asymptotic(x: Fraction) -> Decimal:
    """Q(x) for x >= 20 from the asymptotic series Q(x) = phi(x)/x sum_n (-1)^n (2n-1)!!/x^(2n).

    The Taylor series of :func:`normal_upper_tail` needs about x^2 / 4.6 digits and x^2 terms,
    which hangs for a tiny sigma (x ~ 600 at sigma 1e-5). For x >= 20 the alternating asymptotic
    series, summed while its terms shrink, has a remainder below its first omitted term, which
    is below 10^-55 relative here. exp(-x^2/2) underflows to 0 only where Q(x) < 10^-999999, far
    below the 1e-45 computation error that the bound already adds.
    """
    with localcontext() as ctx:
        ctx.prec = _TARGET_DIGITS + 10
        xd = Decimal(x.numerator) / Decimal(x.denominator)
        inv_x2 = 1 / (xd * xd)
        term = Decimal(1)
        total = Decimal(1)
        tiny = Decimal(10) ** -(_TARGET_DIGITS + 5)
        n = 0
        while abs(term) > tiny:
            n += 1
            next_term = -term * (2 * n - 1) * inv_x2
            if abs(next_term) >= abs(term):  # the asymptotic series starts to diverge
                break
            term = next_term
            total += term
        density = (-xd * xd / 2).exp() / (2 * _decimal_pi()).sqrt()
        return +(density / xd * total)


def _float_up(value: Fraction | Decimal) -> float:
    """The smallest float >= value."""
    exact = Fraction(value)
    approx = float(exact)
    return approx if Fraction(approx) >= exact else math.nextafter(approx, math.inf)


def _as_fraction(value: float | Fraction, name: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, int | float | Fraction):
        raise IntSmoothError(f"{name} must be a number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise IntSmoothError(f"{name} must be finite, got {value!r}")
    frac = Fraction(value)
    if frac <= 0:
        raise IntSmoothError(f"{name} must be > 0, got {value!r}")
    return frac


@dataclass(frozen=True)
class NoiseTable:
    """Integer thresholds that turn b-bit uniform integers into rounded Gaussian noise.

    ``thresholds`` holds T_{-K}, ..., T_{K-1} (Python ints, non-decreasing, in [0, 2^bits]);
    ``tail_mass`` and ``rounding_error`` are upper bounds on P(|k| > K) and sum_j |d_j| (module
    docstring). ``left_cdf`` holds F(-K-1), ..., F(-1) to about 50 digits. Build tables with
    :func:`rounded_gaussian_table`.
    """

    sigma: float
    step: Fraction
    bits: int
    K: int
    thresholds: tuple[int, ...]
    tail_mass: float = field(compare=False)
    rounding_error: float = field(compare=False)
    left_cdf: tuple[Decimal, ...] = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.bits not in SUPPORTED_BITS:
            raise IntSmoothError(f"bits must be one of {SUPPORTED_BITS}, got {self.bits!r}")
        if not 1 <= self.K <= MAX_K:
            raise IntSmoothError(f"K must be in 1..{MAX_K} (int16 noise), got {self.K}")
        t = self.thresholds
        if len(t) != 2 * self.K or len(self.left_cdf) != self.K + 1:
            raise IntSmoothError(f"a table with K={self.K} needs {2 * self.K} thresholds")
        if t[0] < 0 or t[-1] > 2**self.bits or any(a > b for a, b in zip(t, t[1:], strict=False)):
            raise IntSmoothError("thresholds must be non-decreasing within [0, 2^bits]")

    @property
    def support(self) -> np.ndarray:
        """The values -K..K that the sampler can return (int64)."""
        return np.arange(-self.K, self.K + 1, dtype=np.int64)

    @property
    def per_philox_block(self) -> int:
        """Uniforms per Philox-4x32 call: two 64-bit or four 32-bit ones."""
        return 128 // self.bits

    def left_thresholds(self) -> tuple[int, ...]:
        """T_{-K}, ..., T_{-1}, all below 2^(bits-1); the right half is 2^bits - T_{-j-1}."""
        return self.thresholds[: self.K]

    def implemented_counts(self) -> tuple[int, ...]:
        """Integers c_k, k = -K..K, with p_impl(k) = c_k / 2^bits exactly; they sum to 2^bits."""
        edges = (0, *self.thresholds, 2**self.bits)
        return tuple(b - a for a, b in zip(edges, edges[1:], strict=False))

    def implemented_pmf(self) -> np.ndarray:
        """p_impl(k), k = -K..K: the distribution the integer sampler draws (float64)."""
        return np.array([c / 2**self.bits for c in self.implemented_counts()], dtype=np.float64)

    def exact_pmf(self) -> np.ndarray:
        """p(k) = F(k) - F(k-1), k = -K..K, of the untruncated rounded Gaussian (float64).

        Each entry is a difference of ~50-digit CDF values, so tail entries keep full relative
        precision; the mass outside -K..K (``tail_mass``) is not included.
        """
        cdf = self.left_cdf
        left = [cdf[i + 1] - cdf[i] for i in range(self.K)]  # k = -K..-1
        centre = 1 - 2 * cdf[-1]
        return np.array([*left, centre, *reversed(left)], dtype=np.float64)

    def tv_per_coordinate(self) -> float:
        """Upper bound on TV(implemented, exact) for one coordinate: sum_j |d_j| + tail mass."""
        return _float_up(Fraction(self.rounding_error) + Fraction(self.tail_mass))

    def tv_bound(self, num_coordinates: int) -> float:
        """Upper bound on the TV distance for ``num_coordinates`` independent coordinates."""
        if isinstance(num_coordinates, bool) or not isinstance(num_coordinates, int | np.integer):
            raise IntSmoothError(f"num_coordinates must be an int, got {num_coordinates!r}")
        if num_coordinates < 0:
            raise IntSmoothError(f"num_coordinates must be >= 0, got {num_coordinates}")
        return min(1.0, _float_up(int(num_coordinates) * Fraction(self.tv_per_coordinate())))


def _smallest_k(half_step: Fraction, tail: Fraction) -> int:
    """Smallest K >= 1 with P(|k| > K) = 2 Q((2K + 1) * half_step) <= tail (bisection)."""

    def tail_ok(k: int) -> bool:
        x = (2 * k + 1) * half_step
        # 2 Q(30) < 1e-196 is below every allowed tail; skip the costly high-precision sum.
        return x >= 30 or 2 * Fraction(normal_upper_tail(x)) <= tail

    if not tail_ok(MAX_K):
        raise IntSmoothError(
            f"sigma/step is too large for int16 noise: K would exceed {MAX_K} grid steps; "
            "use a smaller sigma or a larger step"
        )
    low, high = 0, 1  # invariant: tail_ok(high), and low == 0 or not tail_ok(low)
    while not tail_ok(high):
        low, high = high, min(2 * high, MAX_K)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if tail_ok(middle) else (middle, high)
    return high


def rounded_gaussian_table(
    sigma: float,
    step: float | Fraction = DEFAULT_STEP,
    bits: int = 64,
    tail: float | None = None,
) -> NoiseTable:
    """Threshold table for k = round(e / step), e ~ N(0, sigma^2), from ``bits``-bit uniforms.

    ``sigma`` and ``step`` are taken exactly (floats by their binary value; the default step is
    exactly 1/255). K is the smallest value with P(|k| > K) <= ``tail``, default 2^-(bits + 6)
    (2^-70 for 64 bits, 2^-38 for 32 bits), so the tail mass is negligible next to the threshold
    rounding error.
    """
    sigma_frac = _as_fraction(sigma, "sigma")
    step_frac = _as_fraction(step, "step")
    if isinstance(bits, bool) or bits not in SUPPORTED_BITS:
        raise IntSmoothError(f"bits must be one of {SUPPORTED_BITS}, got {bits!r}")
    tail_frac = Fraction(2) ** -(bits + 6) if tail is None else _as_fraction(tail, "tail")
    if not MIN_TAIL <= tail_frac < 1:
        raise IntSmoothError(f"tail must be in [2^-500, 1), got {tail!r}")
    half_step = step_frac / (2 * sigma_frac)  # F(j) = Phi((2j + 1) * half_step)
    k_max = _smallest_k(half_step, tail_frac)
    # left_cdf[i] = F(i - K - 1) = Q((2(K - i) + 1) * half_step), i = 0..K.
    left_cdf = tuple(normal_upper_tail((2 * m + 1) * half_step) for m in range(k_max, -1, -1))
    scale = Decimal(2**bits)
    with localcontext() as ctx:
        ctx.prec = 80
        left = [int((scale * f).to_integral_value(ROUND_HALF_EVEN)) for f in left_cdf[1:]]
        rounding = 2 * sum(
            abs(Decimal(t) / scale - f) for t, f in zip(left, left_cdf[1:], strict=True)
        )
        rounding += 2 * k_max * _COMPUTATION_ERROR
        tail_mass = 2 * left_cdf[0] + 2 * _COMPUTATION_ERROR
    right = [2**bits - t for t in reversed(left)]
    return NoiseTable(
        sigma=float(sigma),
        step=step_frac,
        bits=bits,
        K=k_max,
        thresholds=(*left, *right),
        tail_mass=_float_up(tail_mass),
        rounding_error=_float_up(rounding),
        left_cdf=left_cdf,
    )
