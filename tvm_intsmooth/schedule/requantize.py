"""Fixed-point requantization in int32 arithmetic: the same values as the int64 form, exactly.

The quantized graph requantizes ``x`` (int8..int32) by a Q31 multiplier ``M`` in [0, 2^31) and
a right shift ``S`` (:mod:`tvm_intsmooth.quantize.fixed_point`) in int64:
``y = (x * M + 2^(S-1)) >> S``, then clamps and narrows. The same ``y`` in int32 operations:

- with ``a = max(0, 33 - S)``: ``y = (x 2^a * M + 2^(S+a-1)) >> (S + a)`` (numerator and
  denominator times ``2^a``), so the shift ``S' = S + a`` is at least 33; ``x 2^a`` must still
  fit int32 (small inputs, such as int8 residual operands, take the pre-shift; int32
  accumulators need ``S >= 33``, a multiplier below 1/4);
- with ``x' M = H 2^32 + L``, ``0 <= L < 2^32`` (``H``: the high word of the signed 64-bit
  product, ``vpmuldq`` / ``smull`` and a shuffle): since ``2^(S'-1) = 2^(S'-33) 2^32`` and
  ``L < 2^32`` cannot carry past a multiple of ``2^S'``,
  ``y = (H + 2^(S'-33)) >> (S' - 32)``, with ``|H| < 2^30``: no intermediate overflows int32.

:func:`int32_constants` checks these conditions element by element (a multiplier of 0, the
padded lanes of the blocked layout, needs ``R >> S == 0``) and gives the int32 constants;
:func:`requantize_int32` is the compute. Small inputs have two cheaper forms:
:func:`split_constants` (two 32-bit multiplies) and :func:`shift_constants` (one left shift,
where ``M`` is a power of two times ``2^S``, as for the finer operand of a residual sum).
"""

from __future__ import annotations

import numpy as np
from tvm import te, tirx

INT32_MAX = 2**31 - 1
MIN_SHIFT = 33  # the form needs S' >= 33


def _as_arrays(mult, rounding, shift) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m, r, s = (np.asarray(v, dtype=np.int64) for v in (mult, rounding, shift))
    m, r, s = np.broadcast_arrays(m, r, s)
    if m.ndim == 0:
        m, r, s = (v.reshape(1) for v in (m, r, s))
    return m, r, s


def split_constants(
    mult: np.ndarray, rounding: np.ndarray, shift: np.ndarray, x_max_abs: int
) -> dict[str, np.ndarray] | None:
    """For small inputs (an 8-bit residual operand, say): with ``M = M_h 2^S + M_l``,
    ``0 <= M_l < 2^S``, ``(x M + R) >> S = x M_h + ((x M_l + R) >> S)`` exactly (``x M_h 2^S``
    is a multiple of ``2^S``); every term fits int32 when ``|x| M_h`` and ``|x| M_l + R`` do.
    The int32 constants ``mult_high``, ``mult_low``, ``rounding``, ``shift``, or None."""
    m, r, s = _as_arrays(mult, rounding, shift)
    if np.any(m < 0) or np.any(s < 0) or np.any(s > 31) or np.any(r < 0):
        return None
    high, low = m >> s, m & ((np.int64(1) << s) - 1)
    x = int(x_max_abs)
    if np.any(x * high > INT32_MAX) or np.any(x * low + r > INT32_MAX):
        return None
    return {
        "mult_high": high.astype(np.int32),
        "mult_low": low.astype(np.int32),
        "rounding": r.astype(np.int32),
        "shift": s.astype(np.int32),
    }


def shift_constants(
    mult: np.ndarray, rounding: np.ndarray, shift: np.ndarray, x_max_abs: int
) -> dict[str, np.ndarray] | None:
    """Where every ``M`` is ``2^(S + L)`` and ``0 <= R < 2^S``, ``(x M + R) >> S = x 2^L``
    exactly (``x 2^(S+L)`` is a multiple of ``2^S``, ``R`` adds less than ``2^S``): the int32
    constant ``shift_left`` (``L``), or None where some element is not of that form or
    ``x_max_abs 2^L`` does not fit int32. A shift instead of the split form's two multiplies:
    on x86 the multiplies share two ports that the epilogue's high products also need."""
    m, r, s = _as_arrays(mult, rounding, shift)
    if np.any(m <= 0) or np.any(s < 0) or np.any(s > 62) or np.any(r < 0):
        return None
    if np.any(m & (m - 1)) or np.any(r >> s):  # not a power of two, or R >= 2^S
        return None
    left = np.log2(m).astype(np.int64) - s  # exact: m is a power of two
    if np.any(left < 0) or np.any(int(x_max_abs) << np.maximum(left, 0) > INT32_MAX):
        return None
    return {"shift_left": left.astype(np.int32)}


def int32_constants(
    mult: np.ndarray, rounding: np.ndarray, shift: np.ndarray, x_max_abs: int
) -> dict[str, np.ndarray] | None:
    """The int32 constants ``shift_left``, ``mult``, ``rounding``, ``shift_right`` (broadcast
    to one shape, at least 1-D) that compute ``(x * mult + rounding) >> shift`` exactly for
    every ``|x| <= x_max_abs``, or None where some element does not allow it."""
    m, r, s = _as_arrays(mult, rounding, shift)
    zero = m == 0
    if np.any(m < 0) or np.any(m > INT32_MAX) or np.any((s < 1) & ~zero) or np.any(s > 62):
        return None
    if np.any(zero & ((r >> np.clip(s, 0, 62)) != 0)):
        return None
    if np.any(~zero & (r != (np.int64(1) << np.clip(s - 1, 0, 62)))):
        return None
    left = np.where(zero, 0, np.maximum(0, MIN_SHIFT - s))
    if np.any(int(x_max_abs) * (np.int64(1) << left) > INT32_MAX + 1):
        return None
    total = np.where(zero, MIN_SHIFT, s + left)
    return {
        "shift_left": left.astype(np.int32),
        "mult": m.astype(np.int32),
        "rounding": (np.int64(1) << (total - MIN_SHIFT)).astype(np.int32),
        "shift_right": (total - 32).astype(np.int32),
    }


def _broadcast(tensor: te.Tensor, index: tuple) -> tirx.PrimExpr:
    """``tensor`` read at ``index`` with numpy broadcasting (right-aligned, size-1 axes)."""
    dims = list(tensor.shape)
    tail = index[len(index) - len(dims) :]
    return tensor[tuple(0 if int(d) == 1 else i for d, i in zip(dims, tail, strict=True))]


def _clamped(y: tirx.PrimExpr, clip: tuple[int, int] | None, out_dtype: str) -> tirx.PrimExpr:
    if clip is not None:
        y = tirx.max(tirx.min(y, tirx.const(clip[1], "int32")), tirx.const(clip[0], "int32"))
    return y.astype(out_dtype)


INPUT_BLOCK = "requantize_input"  # x (pre-shifted), the high product's operand
HIGH_BLOCK = "requantize_high"  # the high word of x * M: one block, so a schedule can give it
# the target's fast form (tensorize_blocked_conv)


def requantize_int32(
    x: te.Tensor,
    shift_left: te.Tensor | None,
    mult: te.Tensor,
    rounding: te.Tensor,
    shift_right: te.Tensor,
    clip: tuple[int, int] | None,
    out_dtype: str,
) -> te.Tensor:
    """``clip((x * M + 2^(S-1)) >> S)`` as ``out_dtype``, in int32 (module docstring);
    ``shift_left`` None: no pre-shift (an int32 input, whose shifts are all 0).

    Three stages: the operand (:data:`INPUT_BLOCK`), the high product (:data:`HIGH_BLOCK`,
    ``H = (x * M) >> 32`` in 64-bit), and the add, shift and clamp; a schedule inlines them or
    gives the high product the target's intrinsic (x86 builds it from two ``vpmuldq``)."""
    i32, i64 = "int32", "int64"

    def operand(*index):
        wide = x(*index).astype(i32)
        if shift_left is not None:
            wide = wide << _broadcast(shift_left, index)
        return wide

    wide = te.compute(x.shape, operand, name=INPUT_BLOCK)

    def high_word(*index):
        product = wide(*index).astype(i64) * _broadcast(mult, index).astype(i64)
        return (product >> tirx.const(32, i64)).astype(i32)

    high = te.compute(x.shape, high_word, name=HIGH_BLOCK)

    def value(*index):
        y = (high(*index) + _broadcast(rounding, index)) >> _broadcast(shift_right, index)
        return _clamped(y, clip, out_dtype)

    return te.compute(x.shape, value, name="requantize_int32")


def _split(v: tirx.PrimExpr, constants: tuple[te.Tensor, ...], index: tuple) -> tirx.PrimExpr:
    """``(v * M + R) >> S`` in int32 from the :func:`split_constants` tensors ``(mult_high,
    mult_low, rounding, shift)`` read at ``index``: ``v * M_h + ((v * M_l + R) >> S)``."""
    mult_high, mult_low, rounding, shift = (_broadcast(c, index) for c in constants)
    return v * mult_high + ((v * mult_low + rounding) >> shift)


def requantize_int32_split(
    x: te.Tensor,
    mult_high: te.Tensor,
    mult_low: te.Tensor,
    rounding: te.Tensor,
    shift: te.Tensor,
    clip: tuple[int, int] | None,
    out_dtype: str,
) -> te.Tensor:
    """``clip((x * M + R) >> S)`` as ``out_dtype`` for small ``x``, in int32
    (:func:`split_constants`): ``x * M_h + ((x * M_l + R) >> S)``."""

    def value(*index):
        y = _split(x(*index).astype("int32"), (mult_high, mult_low, rounding, shift), index)
        return _clamped(y, clip, out_dtype)

    return te.compute(x.shape, value, name="requantize_int32")


SUM_BLOCK = "requantized_sum"


def requantized_sum(
    a: te.Tensor,
    b: te.Tensor,
    coarse_is_b: te.Tensor,
    shift_left: te.Tensor,
    *split: te.Tensor,
    subtract: bool = False,
) -> te.Tensor:
    """``a' + b'`` (``a' - b'`` with ``subtract``) in int32: the residual sum of two small
    operands, each requantized to the sum's int32 scale. The quantizer forms the sum ``2^16``
    times finer than its coarser operand, whose rescaling is then a shift
    (:func:`shift_constants`: ``shift_left``); the other's is the split form (``split``:
    :func:`split_constants`' four tensors). ``coarse_is_b`` (1 where ``b`` is the coarser operand,
    0 where ``a`` is) picks them at run time, so the kernel is the same whichever operand the
    calibration made the coarser (a tuned database serves the architecture).

    One kernel for both operands and the sum, so that a fused convolution that produces ``a`` or
    ``b`` writes the small operand, not its int32 rescaling."""
    if len(split) != 4:
        raise ValueError(f"requantized_sum takes 4 split-form tensors, got {len(split)}")

    def value(*index):
        flag = _broadcast(coarse_is_b, index) != tirx.const(0, "int32")
        wide_a, wide_b = a(*index).astype("int32"), b(*index).astype("int32")
        coarse = tirx.Select(flag, wide_b, wide_a) << _broadcast(shift_left, index)
        fine = _split(tirx.Select(flag, wide_a, wide_b), split, index)
        if not subtract:
            return coarse + fine
        return tirx.Select(flag, fine - coarse, coarse - fine)

    return te.compute(a.shape, value, name=SUM_BLOCK)
