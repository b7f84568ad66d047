"""Philox-4x32-10, the counter-based generator of Random123 (Salmon et al., SC'11), two ways.

:func:`philox4x32` is the numpy reference. :func:`emit_philox4x32` emits the same function as TIR
``Bind`` statements for a PrimFunc under construction, in the form that TIR computes exactly: every
32-bit word lives in an int64 with a value in ``[0, 2^32)``, the 32 x 32 -> 64 bit product is
assembled from 16-bit halves of the counter word (no intermediate reaches 2^49), and sums are
masked to 32 bits instead of being left to wrap around. Chained uint32/uint64 wrap-around is what
goes wrong in TIR (see tests/test_philox.py), so nothing here relies on it.

One Philox-4x32 round maps counter words (c0, c1, c2, c3) and key words (k0, k1) to::

    hi0, lo0 = mulhilo(M0, c0);  hi1, lo1 = mulhilo(M1, c2)
    (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)

and the key is bumped by the Weyl constants (W0, W1) before every round after the first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tvm import tirx
from tvm.tirx.script import builder as T

from tvm_intsmooth.compat import SCRATCH_SCOPE

PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
WORD_MASK = 0xFFFFFFFF
DEFAULT_ROUNDS = 10


def philox4x32(counter: np.ndarray, key: np.ndarray, rounds: int = DEFAULT_ROUNDS) -> np.ndarray:
    """Philox-4x32 of ``counter[..., 4]`` under ``key[..., 2]`` (uint32 words, broadcast).

    Returns the four output words as a uint32 array of shape ``broadcast(...) + (4,)``.
    """
    ctr = np.asarray(counter, dtype=np.uint32).astype(np.uint64)
    k = np.asarray(key, dtype=np.uint32).astype(np.uint64)
    if ctr.shape[-1] != 4 or k.shape[-1] != 2:
        raise ValueError(f"counter must end in 4 words and key in 2, got {ctr.shape}, {k.shape}")
    mask = np.uint64(WORD_MASK)
    c0, c1, c2, c3 = (ctr[..., i] for i in range(4))
    k0, k1 = k[..., 0], k[..., 1]
    for r in range(rounds):
        if r > 0:
            k0 = (k0 + np.uint64(PHILOX_W0)) & mask
            k1 = (k1 + np.uint64(PHILOX_W1)) & mask
        p0 = np.uint64(PHILOX_M0) * c0  # < 2^64: exact in uint64
        p1 = np.uint64(PHILOX_M1) * c2
        c0, c1, c2, c3 = (
            (p1 >> np.uint64(32)) ^ c1 ^ k0,
            p1 & mask,
            (p0 >> np.uint64(32)) ^ c3 ^ k1,
            p0 & mask,
        )
    return np.stack(np.broadcast_arrays(c0, c1, c2, c3), axis=-1).astype(np.uint32)


def _i64(value: int) -> tirx.PrimExpr:
    return tirx.const(value, "int64")


def _mulhilo_tir(multiplier: int, word: tirx.PrimExpr) -> tuple[tirx.Var, tirx.Var]:
    """Emit ``(hi, lo)`` of ``multiplier * word``; both < 2^32, every intermediate < 2^49."""
    word_hi = T.Bind(word >> _i64(16))
    word_lo = T.Bind(word & _i64(0xFFFF))
    prod_hi = T.Bind(_i64(multiplier) * word_hi)  # < 2^48, weight 2^16
    prod_lo = T.Bind(_i64(multiplier) * word_lo)  # < 2^48, weight 1
    # multiplier * word = (prod_hi >> 16) * 2^32 + mid, with mid < 2^32 + 2^48.
    mid = T.Bind(((prod_hi & _i64(0xFFFF)) << _i64(16)) + prod_lo)
    hi = T.Bind((prod_hi >> _i64(16)) + (mid >> _i64(32)))
    lo = T.Bind(mid & _i64(WORD_MASK))
    return hi, lo


def emit_philox4x32(
    counter: Sequence[tirx.PrimExpr],
    key: Sequence[tirx.PrimExpr],
    rounds: int = DEFAULT_ROUNDS,
    state: tirx.Buffer | None = None,
    lane: tirx.PrimExpr | None = None,
) -> list[tirx.Var]:
    """Emit Philox-4x32 into the PrimFunc being built by the TIR IRBuilder; return 4 word vars.

    ``counter`` (4) and ``key`` (2) are int64 expressions whose values must lie in [0, 2^32); the
    returned int64 variables hold the output words, also in [0, 2^32). Call inside an active
    ``IRBuilder`` PrimFunc frame (e.g. in a loop body).

    The state goes through a 6-word int64 buffer between rounds: TIR's simplifier substitutes
    every ``Bind`` of pure int64 arithmetic into its uses, so a chain of bindings across rounds
    grows exponentially (6 rounds already take 20 s to compile); buffer loads stop that. By
    default a (6,) scratch buffer (``compat.SCRATCH_SCOPE``) is allocated at the point of the
    call. Inside a loop marked vectorized that is wrong on TVM 0.27 (VectorizeLoop does not
    widen allocations made inside the loop, so all lanes share one state): there, pass
    ``state``, an int64 (6, lanes) scratch buffer allocated outside the vectorized loop, and
    ``lane``, the vectorized loop variable.
    """
    if len(counter) != 4 or len(key) != 2:
        raise ValueError(f"need 4 counter words and 2 key words, got {len(counter)}, {len(key)}")
    if (state is None) != (lane is None):
        raise ValueError("pass state and lane together, or neither")
    if state is None:
        state = T.alloc_buffer((6,), "int64", scope=SCRATCH_SCOPE)

    def at(i: int) -> list:
        return [i] if lane is None else [i, lane]

    for i, word in enumerate([*counter, *key]):
        T.buffer_store(state, tirx.Cast("int64", word), at(i))
    for r in range(rounds):
        c0, c1, c2, c3, k0, k1 = (T.Bind(state[tuple(at(i))]) for i in range(6))
        if r > 0:
            k0 = (k0 + _i64(PHILOX_W0)) & _i64(WORD_MASK)
            k1 = (k1 + _i64(PHILOX_W1)) & _i64(WORD_MASK)
        hi0, lo0 = _mulhilo_tir(PHILOX_M0, c0)
        hi1, lo1 = _mulhilo_tir(PHILOX_M1, c2)
        for i, word in enumerate([hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0, k0, k1]):
            T.buffer_store(state, word, at(i))
    return [T.Bind(state[tuple(at(i))]) for i in range(4)]


def _u32(value: int) -> tirx.PrimExpr:
    return tirx.const(value, "uint32")


def _u64(value: int) -> tirx.PrimExpr:
    return tirx.const(value, "uint64")


def emit_round_keys(key: Sequence[tirx.PrimExpr], rounds: int = DEFAULT_ROUNDS) -> tirx.Buffer:
    """Emit the key schedule: a uint64 (2, rounds) scratch buffer with the key words of each round,
    ``(k + r W) mod 2^32``, computed from int64 ``key`` words in [0, 2^32) without wrap-around
    (the sum stays below 2^36). Call once, outside the loops that use it."""
    keys = T.alloc_buffer((2, rounds), "uint64", scope=SCRATCH_SCOPE)
    for r in range(rounds):
        for i, weyl in enumerate((PHILOX_W0, PHILOX_W1)):
            word = (tirx.Cast("int64", key[i]) + _i64(r * weyl)) & _i64(WORD_MASK)
            T.buffer_store(keys, tirx.Cast("uint64", word), [i, r])
    return keys


def emit_philox4x32_lanes(
    counter: Sequence[tirx.PrimExpr],
    round_keys: tirx.Buffer,
    state: tirx.Buffer,
    lane: tirx.PrimExpr,
) -> list[tirx.Var]:
    """Philox-4x32 for a loop marked vectorized: each 32-bit word in a uint64 lane, so that the
    32 x 32 -> 64 bit products are one ``vpmuludq`` (x86, which multiplies the low 32 bits of
    64-bit lanes: the mask on each multiplicand tells LLVM so) or ``umull`` (ARM) each, and the
    high word one shift.

    ``counter``: 4 uint64 expressions in [0, 2^32); ``round_keys``: from
    :func:`emit_round_keys` (its second axis is the round count); ``state``: a uint64
    (4, lanes) scratch buffer allocated outside the vectorized loop, ``lane`` that loop's variable
    (see :func:`emit_philox4x32` for why). Every operation is exact without wrap-around:
    products of two words are below 2^64; the key additions, the only wrapping step, are in
    :func:`emit_round_keys`. Returns 4 uint64 word variables, each in [0, 2^32).
    """
    if len(counter) != 4:
        raise ValueError(f"need 4 counter words, got {len(counter)}")
    mask, high = _u64(WORD_MASK), _u64(32)
    for i, word in enumerate(counter):
        T.buffer_store(state, word, [i, lane])
    # Between rounds the words' upper 32 bits may hold garbage (the low words are stored
    # unmasked, and XORed into the next ones): only their low 32 bits are ever used, by the
    # masked multiplications and by the final masks.
    for r in range(int(round_keys.shape[1])):
        c0, c1, c2, c3 = (T.Bind(state[i, lane]) for i in range(4))
        p0 = T.Bind((c0 & mask) * _u64(PHILOX_M0))
        p1 = T.Bind((c2 & mask) * _u64(PHILOX_M1))
        words = [(p1 >> high) ^ c1 ^ round_keys[0, r], p1, (p0 >> high) ^ c3 ^ round_keys[1, r], p0]
        for i, word in enumerate(words):
            T.buffer_store(state, word, [i, lane])
    return [T.Bind(state[i, lane] & mask) for i in range(4)]
