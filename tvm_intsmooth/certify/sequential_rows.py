"""Rows and sidecars of sequential certification runs: what they hold and how they are checked.

A sequential run (``intsmooth certify --radii ...``) writes the columns of the fixed-n layout
(``idx label predict radius correct time nA n``) and three more:

- ``decided``: the largest listed radius certified (0 for an abstention);
- ``pA_lower``: the anytime-valid lower bound on the guessed class's probability, after the
  sampler's TV bound (the running maximum over the checks, full precision);
- ``stop``: ``decided`` (every listed radius certified or out of reach) or ``n_max`` (the budget
  ran out for some radius).

``n`` is the number of estimation samples used (a checkpoint of :func:`~.sequential.checkpoints`)
and ``radius`` is ``sigma * Phi^-1(pA_lower)``: a valid certified radius at least ``decided``
and below the next listed radius, so certified accuracy at a listed radius is the same from
either column. The sidecar records ``"mode": "sequential"``, ``radii`` and ``n_max`` instead of
``n``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from scipy.special import ndtr, ndtri

from tvm_intsmooth.certify.cohen import ABSTAIN
from tvm_intsmooth.certify.sequential import (
    STOP_DECIDED,
    STOP_N_MAX,
    SequentialCertificate,
    check_radii,
    checkpoints,
    confidence_sequence_lower,
)
from tvm_intsmooth.errors import IntSmoothError

MODE_KEY = "mode"
SEQUENTIAL_MODE = "sequential"
SEQUENTIAL_EXTRA_COLUMNS = ("decided", "pA_lower", "stop")
SEQUENTIAL_REQUIRED_METADATA = ("radii", "n_max")
STOP_REASONS = (STOP_DECIDED, STOP_N_MAX)

# pA_lower is written with repr (exact), but the running maximum over the checks can exceed the
# final check's bound, and a recomputed root may differ from the written one in the last bits.
_BOUND_ATOL = 1e-12
_RADIUS_RTOL = 6e-3  # the radius column keeps three significant digits, as in the fixed-n layout


def is_sequential(meta: Mapping[str, Any] | None) -> bool:
    """Whether run metadata (a sidecar) describes a sequential run."""
    return meta is not None and meta.get(MODE_KEY) == SEQUENTIAL_MODE


def check_sequential_metadata(meta: dict[str, Any]) -> None:
    """IntSmoothError unless a sequential sidecar's radii and n_max are valid."""
    try:
        radii = check_radii(meta["radii"])
        checkpoints(meta["n_max"])
    except IntSmoothError as err:
        raise IntSmoothError(f"run metadata: {err}") from err
    if isinstance(meta["n_max"], bool) or not isinstance(meta["n_max"], int):
        raise IntSmoothError(f"run metadata: n_max = {meta['n_max']!r} is not an integer")
    meta["radii"] = list(radii)


def sequential_radius(certificate: SequentialCertificate, sigma: float) -> float:
    """The radius column of a sequential row: ``sigma * Phi^-1(pA_lower)`` when a listed radius
    is certified (pA_lower > 1/2 then), 0.0 for an abstention."""
    if certificate.prediction == ABSTAIN:
        return 0.0
    return float(sigma * ndtri(certificate.p_a_lower))


def _largest_lower_bound(n_a: int, n: int, meta: Mapping[str, Any]) -> float:
    """The largest running lower bound that ``n_a`` of ``n`` draws can come with: at each check
    t <= n the count was at most min(n_a, t)."""
    return max(
        confidence_sequence_lower(min(n_a, t), t, meta["alpha"])
        for t in checkpoints(meta["n_max"])
        if t <= n
    )


def check_sequential_row(
    predict: int,
    radius: float,
    n_a: int,
    n: int,
    decided: float,
    p_a_lower: float,
    stop: str,
    meta: Mapping[str, Any],
) -> float:
    """Check a sequential row against its sidecar; returns the exact radius (ValueError if not).

    ``n`` must be a checkpoint within n_max; ``pA_lower`` must lie between the bound of the
    final counts and the largest bound the counts allow at the earlier checks (minus the TV
    bound); ``decided`` must be the largest listed radius it certifies, the prediction an
    abstention exactly when none is, and ``radius`` its three-digit ``sigma Phi^-1(pA_lower)``.
    """
    sigma, tv_bound, radii = meta["sigma"], meta["tv_bound"], meta["radii"]
    if stop not in STOP_REASONS:
        raise ValueError(f"stop {stop!r}: expected one of {', '.join(STOP_REASONS)}")
    if n not in checkpoints(meta["n_max"]):
        raise ValueError(f"n = {n} is not a checkpoint of n_max = {meta['n_max']}")
    low = confidence_sequence_lower(n_a, n, meta["alpha"]) - tv_bound
    high = _largest_lower_bound(n_a, n, meta) - tv_bound
    if not low - _BOUND_ATOL <= p_a_lower <= high + _BOUND_ATOL:
        raise ValueError(
            f"pA_lower = {p_a_lower!r} but nA = {n_a} of n = {n} give a bound in "
            f"[{low:.12g}, {high:.12g}]"
        )
    certified = [r for r in radii if p_a_lower >= float(ndtr(r / sigma)) and p_a_lower > 0.5]
    expected = certified[-1] if certified else 0.0
    if decided != expected or (predict == ABSTAIN) != (not certified):
        what = f"radius {expected}" if certified else "an abstention"
        raise ValueError(
            f"pA_lower = {p_a_lower!r} decides {what} of radii {radii}, "
            f"not decided = {decided} with predict {predict}"
        )
    exact = float(sigma * ndtri(p_a_lower)) if certified else 0.0
    if not math.isclose(radius, exact, rel_tol=_RADIUS_RTOL, abs_tol=1e-12):
        raise ValueError(f"radius {radius} but pA_lower gives {exact:.6g}")
    return exact
