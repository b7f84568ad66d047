"""Fixed-point requantization constants (Jacob et al. 2018, gemmlowp).

A real multiplier r > 0 is written as r = M * 2^-S with M an integer in [2^30, 2^31) and S the
total right shift, so that ``x * r`` is computed for an int32 ``x`` as the int64 expression
``(x * M + 2^(S-1)) >> S``: a rounding doubling high multiply by the Q31 multiplier M fused with
gemmlowp's rounding right shift, with a single rounding (half towards +infinity) instead of two.
``|x * M| < 2^62``, so no intermediate overflows int64.
"""

from __future__ import annotations

import numpy as np

from tvm_intsmooth.errors import IntSmoothError

MAX_SHIFT = 62


def quantize_multiplier(real: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Return (M, S), int64 arrays shaped like ``real``, with ``real ~= M * 2**-S``."""
    real = np.asarray(real, dtype=np.float64)
    if np.any(~np.isfinite(real)) or np.any(real <= 0):
        raise IntSmoothError(f"requantization multiplier must be finite and positive, got {real}")
    frac, exp = np.frexp(real)
    mult = np.round(frac * 2.0**31).astype(np.int64)
    carry = mult == 2**31
    mult = np.where(carry, mult // 2, mult)
    shift = 31 - (exp + carry).astype(np.int64)
    if np.any(shift < 1):
        raise IntSmoothError(f"requantization multiplier {real.max()} is too large (>= 2^30)")
    tiny = shift > MAX_SHIFT  # multipliers below 2^-31: keep S at the int64 limit
    mult = np.where(
        tiny, np.round(np.minimum(real, 2.0**-31) * 2.0**MAX_SHIFT).astype(np.int64), mult
    )
    shift = np.where(tiny, MAX_SHIFT, shift)
    return mult, shift
