"""Integer-only rounded Gaussian noise for a batch of noisy samples: numpy reference and TIR.

Counter layout. Sample i (``i = sample_offset + b`` for row b of the batch) and coordinate c (the
flattened index into one noisy input) use Philox-4x32-10 block j = c // per_block with

    counter = (j, i, stream_lo, stream_hi),   key = (seed_lo, seed_hi),

where ``*_lo``/``*_hi`` are the low and high 32-bit words of the 64-bit seed and stream. With
64-bit uniforms a block yields per_block = 2 of them, U_0 = w0 * 2^32 + w1 and U_1 = w2 * 2^32 +
w3; with 32-bit uniforms per_block = 4, U_p = w_p. Coordinate c uses U_{c mod per_block}, and its
noise is k = -K + #{thresholds T <= U} (:mod:`noise_table`). So a noise value is a pure function
of (seed, stream, sample index, coordinate): any batch split of a counter range gives the same
noise, and two streams never share a counter. Sample indices must stay below 2^32.

The TIR version finds k with the table's symmetry T_j = 2^b - T_{-j-1}, so that every comparison
is between int64 values below 2^63: with V = U when U < 2^(b-1) and V = 2^b - 1 - U otherwise,
and c = #{left thresholds <= V}, k = c - K in the first case and K - c in the second. It runs
on vectors of :data:`LANES` Philox blocks (:func:`emit_philox4x32_lanes`: 32-bit words in
64-bit lanes, one ``vpmuludq`` / ``umull`` per product) and counts with a guide table: the
2^:data:`GUIDE_BITS` buckets of V each hold at most one threshold except in the far tails, so
c = g + (T_g <= V) with g = #{thresholds <= the bucket's start}. The guide entry holds g and the
top bits of T_g's offset in the bucket (:class:`GuideLayout`), so one table load decides
T_g <= V unless V's offset has the same top bits (a tie, about 2^-20 of the values). A lane with
a tie, or whose bucket holds several thresholds (about 0.3% at sigma 0.25), takes the
branch-free binary search over the whole table after the vector. The same counts, so the same
noise to the bit, as the scalar form (:func:`emit_philox4x32` and the binary search alone),
which draws the last blocks of a row that do not fill a vector. No floating-point dtype appears
anywhere in the PrimFunc.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import tirx
from tvm.script.ir_builder import IRBuilder
from tvm.tirx.script import builder as T

from tvm_intsmooth.compat import SCRATCH_SCOPE
from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.smoothing.noise_table import NoiseTable
from tvm_intsmooth.smoothing.philox import (
    WORD_MASK,
    emit_philox4x32,
    emit_philox4x32_lanes,
    emit_round_keys,
    philox4x32,
)

MAX_SAMPLE_INDEX = 2**32  # sample indices are one 32-bit counter word
_SENTINEL = 2**63 - 1  # never < V, since V <= 2^63 - 1
LANES = 16  # Philox blocks per vector: 16 words in uint64 lanes (two zmm, eight NEON registers)
GUIDE_BITS = 12  # the guide table has 2^12 buckets of the folded uniform
_SLOW = 1 << 30  # guide entry flag: the bucket holds more than one threshold


def _check_int(value: object, name: str, low: int, high: int) -> int:
    """``value`` as an int in [low, high), or IntSmoothError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise IntSmoothError(f"{name} must be an int, got {value!r}")
    if not low <= int(value) < high:
        raise IntSmoothError(f"{name} must be in [{low}, {high}), got {value}")
    return int(value)


def _check_shape(table: NoiseTable, batch: int, num_coords: int) -> tuple[int, int]:
    if not isinstance(table, NoiseTable):
        raise IntSmoothError(f"table must be a NoiseTable, got {type(table).__name__}")
    return (
        _check_int(batch, "batch", 1, MAX_SAMPLE_INDEX + 1),
        _check_int(num_coords, "num_coords", 1, 2**31),
    )


def split_words(value: int, name: str) -> tuple[int, int]:
    """(low, high) 32-bit words of a 64-bit unsigned ``value`` (a seed or a stream)."""
    value = _check_int(value, name, 0, 2**64)
    return value & WORD_MASK, value >> 32


def noise_call_args(seed: int, stream: int, sample_offset: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``(key, ctr)`` int64 arrays that the noise PrimFunc takes for these counters."""
    key = np.array(split_words(seed, "seed"), dtype=np.int64)
    sample_offset = _check_int(sample_offset, "sample_offset", 0, MAX_SAMPLE_INDEX)
    ctr = np.array([*split_words(stream, "stream"), sample_offset], dtype=np.int64)
    return key, ctr


def sample_noise_numpy(
    table: NoiseTable, seed: int, stream: int, sample_offset: int, batch: int, num_coords: int
) -> np.ndarray:
    """Noise for samples ``sample_offset .. sample_offset + batch - 1``: int16 [batch, num_coords].

    The reference for the TIR sampler: counts thresholds <= U directly on 64-bit integers.
    """
    batch, num_coords = _check_shape(table, batch, num_coords)
    seed_lo, seed_hi = split_words(seed, "seed")
    stream_lo, stream_hi = split_words(stream, "stream")
    sample_offset = _check_int(sample_offset, "sample_offset", 0, MAX_SAMPLE_INDEX)
    if sample_offset + batch > MAX_SAMPLE_INDEX:
        raise IntSmoothError(
            f"sample_offset + batch = {sample_offset + batch} exceeds 2^32: use another stream"
        )
    per_block = table.per_philox_block
    num_blocks = -(-num_coords // per_block)
    counter = np.empty((batch, num_blocks, 4), dtype=np.uint32)
    counter[..., 0] = np.arange(num_blocks, dtype=np.uint32)[None, :]
    counter[..., 1] = np.arange(sample_offset, sample_offset + batch, dtype=np.uint64)[:, None]
    counter[..., 2] = stream_lo
    counter[..., 3] = stream_hi
    words = philox4x32(counter, np.array([seed_lo, seed_hi], dtype=np.uint32))
    if table.bits == 64:
        wide = words.astype(np.uint64)
        uniforms = (wide[..., 0::2] << np.uint64(32)) | wide[..., 1::2]
    else:
        uniforms = words.astype(np.uint64)
    uniforms = uniforms.reshape(batch, num_blocks * per_block)[:, :num_coords]
    fitting = np.array([t for t in table.thresholds if t < 2**table.bits], dtype=np.uint64)
    counts = np.searchsorted(fitting, uniforms, side="right")
    return (counts.astype(np.int64) - table.K).astype(np.int16)


def _i64(value: int) -> tirx.PrimExpr:
    return tirx.const(value, "int64")


def _search_table(table: NoiseTable) -> list[int]:
    """Left thresholds minus one (so ``A < V`` means ``T <= V``), padded to 2^m > K + 1 (at
    least two sentinels: the guide reads the entry after the last threshold's)."""
    size = 1 << (table.K + 1).bit_length()
    return [t - 1 for t in table.left_thresholds()] + [_SENTINEL] * (size - table.K)


def _emit_count(search: tirx.Buffer, folded: tirx.PrimExpr) -> tirx.PrimExpr:
    """Emit #{i : search[i] < folded} (a branch-free binary search over the power-of-two
    table); return it as an int64 expression."""
    # The search position lives in a scratch buffer: as a chain of bindings, TVM's buffer-region
    # analysis expands it (each step uses the previous position twice) and takes minutes.
    position = T.alloc_buffer((1,), "int64", scope=SCRATCH_SCOPE)
    T.buffer_store(position, _i64(0), [0])
    step = int(search.shape[0]) // 2
    while step >= 1:
        below = search[position[0] + _i64(step - 1)] < folded
        T.buffer_store(position, position[0] + tirx.Select(below, _i64(step), _i64(0)), [0])
        step //= 2
    return position[0]


def _emit_lookup(table: NoiseTable, search: tirx.Buffer, hi: tirx.PrimExpr, lo: tirx.PrimExpr):
    """Emit k for the uniform (hi, lo) (lo = None for 32-bit uniforms); return an int64 var."""
    half = 2**31
    upper = T.Bind(hi >= _i64(half))
    if lo is None:
        folded = T.Bind(tirx.Select(upper, _i64(WORD_MASK) - hi, hi))
    else:
        mirror = ((_i64(WORD_MASK) - hi) << _i64(32)) | (_i64(WORD_MASK) - lo)
        folded = T.Bind(tirx.Select(upper, mirror, (hi << _i64(32)) | lo))
    count = T.Bind(_emit_count(search, folded))
    return T.Bind(tirx.Select(upper, _i64(table.K) - count, count - _i64(table.K)))


def _emit_block(table, search, out, row, block, sample, key, stream, positions: int) -> None:
    """Emit one Philox block for sample row ``row`` and store its first ``positions`` noises."""
    words = emit_philox4x32([tirx.Cast("int64", block), sample, stream[0], stream[1]], key)
    per_block = table.per_philox_block
    for p in range(positions):
        if table.bits == 64:
            k = _emit_lookup(table, search, words[2 * p], words[2 * p + 1])
        else:
            k = _emit_lookup(table, search, words[p], None)
        T.buffer_store(out, tirx.Cast("int16", k), [row, block * per_block + p])


@dataclass(frozen=True)
class GuideLayout:
    """How a guide entry (int32) packs, for bucket ``b`` of width ``2^shift``: ``g`` (the index
    of the first threshold at or after the bucket's start) in the low ``first_bits``, the top
    bits of that threshold's offset in the bucket (``offset >> drop``, all ones where it lies past
    the bucket) above them, and :data:`_SLOW` where the bucket holds a second threshold."""

    shift: int
    first_bits: int
    drop: int

    @classmethod
    def of(cls, table: NoiseTable) -> GuideLayout:
        shift = table.bits - 1 - GUIDE_BITS
        first_bits = (len(_search_table(table)) - 1).bit_length()
        return cls(shift, first_bits, max(0, shift - (30 - first_bits)))

    @property
    def top_mask(self) -> int:
        return (1 << (30 - self.first_bits)) - 1


def _emit_guide(table: NoiseTable, search: tirx.Buffer) -> tirx.Buffer:
    """Emit the guide table of the folded uniforms V (``bits - 1`` bits), one int32 entry per
    bucket ``b = V >> shift`` (:class:`GuideLayout`): where the bucket holds one threshold at
    most, ``#{T <= V}`` is ``g + (T_g <= V)``, and the entry decides ``T_g <= V`` without
    loading T_g unless V's offset in the bucket has the same top bits (:func:`_emit_guided`)."""
    layout = GuideLayout.of(table)
    shift = layout.shift
    guide = T.alloc_buffer((1 << GUIDE_BITS,), "int32", scope="global")
    position = T.alloc_buffer((1,), "int32", scope=SCRATCH_SCOPE)
    T.buffer_store(position, tirx.const(0, "int32"), [0])
    with T.serial(0, 1 << GUIDE_BITS) as bucket:
        start = T.Bind(tirx.Cast("int64", bucket) << _i64(shift))
        with T.While(search[position[0]] < start):  # the sentinels end it
            T.buffer_store(position, position[0] + 1, [0])
        first = T.Bind(position[0])
        second_inside = search[first + 1] < start + _i64((1 << shift) - 1)
        flag = tirx.Select(second_inside, tirx.const(_SLOW, "int32"), tirx.const(0, "int32"))
        offset = search[first] - start  # >= 0: search[first] >= start
        inside = offset < _i64(1 << shift)
        top = tirx.Select(inside, offset >> _i64(layout.drop), _i64(layout.top_mask))
        packed = (tirx.Cast("int32", top) << tirx.const(layout.first_bits, "int32")) | first
        T.buffer_store(guide, packed | flag, [bucket])
    return guide


def _emit_guided(layout: GuideLayout, guide: tirx.Buffer, value: tirx.PrimExpr):
    """``(count, slow)`` for the folded uniform ``value`` from its guide entry alone: ``count``
    is ``#{T <= value}`` unless ``slow`` (the bucket holds several thresholds, or the offsets
    tie in their top bits), where the full search must decide."""
    i32 = "int32"
    entry = T.Bind(guide[tirx.Cast(i32, value >> _i64(layout.shift))])
    first = entry & tirx.const((1 << layout.first_bits) - 1, i32)
    top = (entry >> tirx.const(layout.first_bits, i32)) & tirx.const(layout.top_mask, i32)
    offset = value & _i64((1 << layout.shift) - 1)
    mine = T.Bind(tirx.Cast(i32, offset >> _i64(layout.drop)))
    count = tirx.Cast("int64", first) + tirx.Select(mine > top, _i64(1), _i64(0))
    return count, (entry >= tirx.const(_SLOW, i32)) | (mine == top)


def _emit_chunks(table, search, guide, out, row, counter_rest, round_keys, chunks: int) -> None:
    """Emit the noise of blocks ``0 .. chunks * LANES - 1`` of sample row ``row``: Philox on
    :data:`LANES` uint32 lanes, the guided lookup on every lane, then, where a lane's uniform
    fell into a bucket of several thresholds (the far tails, rare), the full search for it."""
    per_block, bits, k_max = table.per_philox_block, table.bits, table.K
    width = LANES * per_block  # noise values per chunk
    layout = GuideLayout.of(table)
    state = T.alloc_buffer((4, LANES), "uint64", scope=SCRATCH_SCOPE)
    noise = T.alloc_buffer((width,), "int16", scope=SCRATCH_SCOPE)
    folded = T.alloc_buffer((width,), "int64", scope=SCRATCH_SCOPE)
    slow = T.alloc_buffer((width,), "int32", scope=SCRATCH_SCOPE)  # 1: lower half, 2: upper half
    pending = T.alloc_buffer((1,), "int32", scope=SCRATCH_SCOPE)
    zero, one = tirx.const(0, "int32"), tirx.const(1, "int32")
    with T.serial(0, chunks) as chunk:
        with T.vectorized(0, LANES) as lane:
            block = tirx.Cast("uint64", chunk * LANES + lane)
            words = emit_philox4x32_lanes([block, *counter_rest], round_keys, state, lane)
            for p in range(per_block):
                high = words[2 * p] if bits == 64 else words[p]
                upper = high >= tirx.const(2**31, "uint64")
                low = words[2 * p + 1] if bits == 64 else None
                uniform = T.Bind(high if low is None else (high << tirx.const(32, "uint64")) | low)
                mirror = uniform ^ tirx.const(2**bits - 1, "uint64")  # 2^bits - 1 - U
                value = T.Bind(tirx.Cast("int64", tirx.Select(upper, mirror, uniform)))
                count, flagged = _emit_guided(layout, guide, value)
                at = lane * per_block + p
                k = tirx.Select(upper, _i64(k_max) - count, count - _i64(k_max))
                T.buffer_store(noise, tirx.Cast("int16", k), [at])
                T.buffer_store(folded, value, [at])
                side = tirx.Select(upper, tirx.const(2, "int32"), one)
                T.buffer_store(slow, tirx.Select(flagged, side, zero), [at])
        T.buffer_store(pending, zero, [0])
        with T.serial(0, width) as i:
            T.buffer_store(pending, pending[0] | slow[i], [0])
        # Unrolled: as a loop, LLVM vectorizes the full search into masked gathers that run for
        # every lane of the chunk, 40% of the sampler's time for 0.3% of its values.
        with (
            T.If(pending[0] != zero),
            T.Then(),
            T.unroll(0, width) as i,
            T.If(slow[i] != zero),
            T.Then(),
        ):
            count = T.Bind(_emit_count(search, folded[i]))
            k = tirx.Select(slow[i] == 2, _i64(k_max) - count, count - _i64(k_max))
            T.buffer_store(noise, tirx.Cast("int16", k), [i])
        with T.vectorized(0, width) as i:
            T.buffer_store(out, noise[i], [row, chunk * width + i])


def noise_primfunc(
    table: NoiseTable, batch: int, num_coords: int, global_symbol: str | None = None
) -> tirx.PrimFunc:
    """TIR PrimFunc ``(key: int64[2], ctr: int64[3], out: int16[batch, num_coords])``.

    ``key`` = (seed_lo, seed_hi), ``ctr`` = (stream_lo, stream_hi, sample_offset); it writes the
    same noise as :func:`sample_noise_numpy`. Words outside [0, 2^32) and sample ranges past 2^32
    fail at run time with an assertion. Use from Relax as
    ``R.call_tir(gv, [key, ctr], out_ty=relax.TensorType((batch, num_coords), "int16"))``.

    Without ``global_symbol`` the function is private: it takes the name of the GlobalVar it is
    added under, so one Relax module can hold several (say for the n0 and the n batch shapes),
    whereas a global symbol must be unique in a module. To build the PrimFunc on its own with
    ``tvm.compile``, give it a ``global_symbol`` (private functions get no packed entry point).
    It is marked ``tirx.is_scheduled`` (it comes scheduled: parallel over the samples,
    vectorized inside), so tuning leaves it alone.
    """
    batch, num_coords = _check_shape(table, batch, num_coords)
    if batch * num_coords >= 2**31:
        raise IntSmoothError(
            f"batch * num_coords = {batch * num_coords} must stay below 2^31 (int32 indexing): "
            "draw the noise in smaller batches"
        )
    per_block = table.per_philox_block
    full_blocks, remainder = divmod(num_coords, per_block)
    search_values = _search_table(table)
    word_limit = _i64(2**32)
    with IRBuilder() as builder, T.prim_func():
        attrs = {"tirx.noalias": True, "tirx.is_scheduled": True}
        if global_symbol is not None:
            T.func_name(global_symbol)
            attrs["global_symbol"] = global_symbol
        T.func_attr(attrs)
        key_buf = T.arg("key", T.buffer((2,), "int64"))
        ctr_buf = T.arg("ctr", T.buffer((3,), "int64"))
        out = T.arg("out", T.buffer((batch, num_coords), "int16"))
        words_ok = tirx.all(
            *[(w >= _i64(0)) & (w < word_limit) for w in (key_buf[0], key_buf[1])],
            *[(w >= _i64(0)) & (w < word_limit) for w in (ctr_buf[0], ctr_buf[1])],
        )
        offset_ok = (ctr_buf[2] >= _i64(0)) & (ctr_buf[2] <= _i64(MAX_SAMPLE_INDEX - batch))
        with T.Assert(words_ok, "noise key/stream words must lie in [0, 2^32)"):
            pass
        with T.Assert(offset_ok, "noise sample_offset + batch must not exceed 2^32"):
            pass
        search = T.alloc_buffer((len(search_values),), "int64", scope="global")
        for i, value in enumerate(search_values):
            T.buffer_store(search, _i64(value), [i])
        chunks = full_blocks // LANES
        guide = _emit_guide(table, search) if chunks else None
        key = [T.Bind(key_buf[0]), T.Bind(key_buf[1])]
        stream = [T.Bind(ctr_buf[0]), T.Bind(ctr_buf[1])]
        offset = T.Bind(ctr_buf[2])
        with T.parallel(0, batch) as row:
            sample = T.Bind(offset + tirx.Cast("int64", row))
            if chunks:
                round_keys = emit_round_keys(key)
                rest = [tirx.Cast("uint64", w) for w in (sample, stream[0], stream[1])]
                _emit_chunks(table, search, guide, out, row, rest, round_keys, chunks)
            if full_blocks > chunks * LANES:
                with T.serial(chunks * LANES, full_blocks) as block:
                    _emit_block(table, search, out, row, block, sample, key, stream, per_block)
            if remainder:
                block = tirx.const(full_blocks, "int32")
                _emit_block(table, search, out, row, block, sample, key, stream, remainder)
    return builder.get()
