"""Integer noise sampler: TIR equals the numpy reference bit for bit; both draw the right law."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import tvm
from scipy import stats
from tvm import relax, tirx
from tvm.script.ir_builder import IRBuilder
from tvm.tirx.script import builder as T

from tvm_intsmooth.analysis import check_integer_only
from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.pipeline.build import lower
from tvm_intsmooth.smoothing.noise_sampler import (
    GUIDE_BITS,
    LANES,
    GuideLayout,
    _emit_guide,
    _emit_guided,
    _emit_lookup,
    _search_table,
    noise_call_args,
    noise_primfunc,
    sample_noise_numpy,
    split_words,
)
from tvm_intsmooth.smoothing.noise_table import rounded_gaussian_table
from tvm_intsmooth.smoothing.philox import philox4x32

TARGET = tvm.target.Target({"kind": "llvm", "num-cores": 2})
BATCH, COORDS = 64, 3 * 32 * 32 + 1  # odd: a partial Philox block at the end of every sample
# Two-sided level 1e-6 for statistics that are N(0, 1) under the null hypothesis.
Z_1E6 = stats.norm.isf(0.5e-6)


@functools.cache
def _table(sigma: float, bits: int):
    return rounded_gaussian_table(sigma, bits=bits)


@functools.cache
def _compiled(sigma: float, bits: int, batch: int, num_coords: int):
    prim = noise_primfunc(_table(sigma, bits), batch, num_coords, global_symbol="noise")
    return tvm.compile(prim, target=TARGET)


def _inputs(seed: int, stream: int, offset: int):
    key, ctr = noise_call_args(seed, stream, offset)
    assert key.dtype == ctr.dtype == np.int64
    return tvm.runtime.tensor(key), tvm.runtime.tensor(ctr)


def _run_tvm(lib, seed: int, stream: int, offset: int, shape) -> np.ndarray:
    out = tvm.runtime.tensor(np.zeros(shape, dtype="int16"))
    lib(*_inputs(seed, stream, offset), out)
    return out.numpy()


CASES = [
    (0, 0, 0),
    (1, 1, 3),
    (2**63, 2**32, 1000),
    (2**64 - 1, 2**64 - 1, 2**32 - BATCH),
    (0x0123456789ABCDEF, 5, 77),
]


@pytest.mark.parametrize(("sigma", "bits"), [(0.25, 64), (0.5, 32)])
def test_tvm_equals_numpy_bit_for_bit(sigma, bits):
    lib = _compiled(sigma, bits, BATCH, COORDS)
    for seed, stream, offset in CASES:
        expected = sample_noise_numpy(_table(sigma, bits), seed, stream, offset, BATCH, COORDS)
        got = _run_tvm(lib, seed, stream, offset, (BATCH, COORDS))
        assert got.dtype == np.int16
        np.testing.assert_array_equal(
            got, expected, err_msg=f"seed/stream/offset {seed, stream, offset}"
        )


def _uniforms(bits: int, seed: int, stream: int, offset: int, batch: int, coords: int):
    """The uniforms behind the noise of sample_noise_numpy (uint64 [batch, coords])."""
    per_block = 128 // bits
    blocks = -(-coords // per_block)
    counter = np.zeros((batch, blocks, 4), dtype=np.uint32)
    counter[..., 0] = np.arange(blocks)[None, :]
    counter[..., 1] = np.arange(offset, offset + batch)[:, None]
    counter[..., 2], counter[..., 3] = split_words(stream, "stream")
    words = philox4x32(counter, np.array(split_words(seed, "seed"), dtype=np.uint32))
    wide = words.astype(np.uint64)
    if bits == 64:
        wide = (wide[..., 0::2] << np.uint64(32)) | wide[..., 1::2]
    return wide.reshape(batch, -1)[:, :coords]


def _slow_count(table, uniforms: np.ndarray) -> int:
    """How many ``uniforms`` fall into a guide bucket that holds several thresholds (where the
    sampler runs the full search)."""
    bits, shift = table.bits, np.uint64(table.bits - 1 - GUIDE_BITS)
    top = np.uint64(2**bits - 1)
    folded = np.where(uniforms >= np.uint64(2 ** (bits - 1)), top - uniforms, uniforms)
    start = (folded >> shift) << shift
    left = np.array(table.left_thresholds(), dtype=np.uint64)
    end = start + (np.uint64(1) << shift) - np.uint64(1)
    inside = np.searchsorted(left, end, side="right") - np.searchsorted(left, start, side="right")
    return int(np.sum(inside >= 2))


@pytest.mark.parametrize(("sigma", "bits"), [(0.25, 64), (0.5, 32)])
@pytest.mark.parametrize("coords", [LANES * 2, LANES * 4 + 1, LANES * 4 + 3, 5])
def test_vector_chunks_tails_and_slow_lanes_equal_numpy(sigma, bits, coords):
    """Whole vector chunks, chunks plus scalar blocks and a partial block, scalar blocks only;
    enough samples that some uniforms take the full search (far tails, several thresholds in
    their guide bucket)."""
    batch = 2048 if coords < 64 else 512
    table = _table(sigma, bits)
    lib = _compiled(sigma, bits, batch, coords)
    expected = sample_noise_numpy(table, 7, 3, 11, batch, coords)
    np.testing.assert_array_equal(_run_tvm(lib, 7, 3, 11, (batch, coords)), expected)
    assert _slow_count(table, _uniforms(bits, 7, 3, 11, batch, coords)) > 10


@pytest.mark.parametrize("bits", [32, 64])
def test_lookup_at_threshold_boundaries(bits):
    """The folded binary search of the TIR equals counting thresholds <= U on 64-bit integers."""
    table = _table(0.05, bits)
    edges = {0, 2**bits - 1, 2 ** (bits - 1) - 1, 2 ** (bits - 1)}
    for t in table.thresholds:
        edges.update(u for u in (t - 1, t, t + 1) if 0 <= u < 2**bits)
    uniforms = np.array(sorted(edges), dtype=np.uint64)
    fitting = np.array([t for t in table.thresholds if t < 2**bits], dtype=np.uint64)
    expected = np.searchsorted(fitting, uniforms, side="right").astype(np.int64) - table.K

    n = len(uniforms)
    search_values = _search_table(table)
    with IRBuilder() as builder, T.prim_func():
        T.func_name("lookup")
        words = T.arg("words", T.buffer((n, 2), "int64"))
        out = T.arg("out", T.buffer((n,), "int64"))
        search = T.alloc_buffer((len(search_values),), "int64")
        for i, value in enumerate(search_values):
            T.buffer_store(search, tirx.const(value, "int64"), [i])
        with T.serial(0, n) as i:
            if bits == 64:
                k = _emit_lookup(table, search, words[i, 0], words[i, 1])
            else:
                k = _emit_lookup(table, search, words[i, 1], None)
            T.buffer_store(out, k, [i])
    lib = tvm.compile(builder.get(), target=TARGET)
    split = np.stack([uniforms >> np.uint64(32), uniforms & np.uint64(0xFFFFFFFF)], axis=1)
    result = tvm.runtime.tensor(np.zeros(n, dtype=np.int64))
    lib(tvm.runtime.tensor(split.astype(np.int64)), result)
    np.testing.assert_array_equal(result.numpy(), expected)


@pytest.mark.parametrize(("sigma", "bits"), [(0.25, 64), (0.05, 64), (0.5, 32)])
def test_guide_entry_counts_exactly_or_sends_to_the_full_search(sigma, bits):
    """The guide entry alone gives #{T <= V} or flags V for the full search: at every threshold
    and its neighbours, and at values whose offset in the bucket ties the threshold's in the
    bits the entry keeps (where the entry cannot decide; they must be flagged)."""
    table = _table(sigma, bits)
    layout = GuideLayout.of(table)
    search_values = _search_table(table)
    rng = np.random.default_rng(3)
    values = {0, 2 ** (bits - 1) - 1, *(int(v) for v in rng.integers(0, 2 ** (bits - 1), 4000))}
    window = 1 << layout.drop  # the values whose offsets an entry cannot tell apart
    for t in table.left_thresholds():
        values.update((t - 2, t - 1, t, t + 1))  # ties with the threshold: flagged
        start = (t - 1) // window * window
        values.update((start - 1, start + window))  # just outside the tie: decided
        values.update(int(start + rng.integers(0, window)) for _ in range(2))
    values = np.array(sorted(v for v in values if 0 <= v < 2 ** (bits - 1)), dtype=np.int64)
    n = len(values)
    with IRBuilder() as builder, T.prim_func():
        T.func_name("guided")
        folded = T.arg("folded", T.buffer((n,), "int64"))
        out = T.arg("out", T.buffer((n, 2), "int64"))
        search = T.alloc_buffer((len(search_values),), "int64")
        for i, value in enumerate(search_values):
            T.buffer_store(search, tirx.const(value, "int64"), [i])
        guide = _emit_guide(table, search)
        with T.serial(0, n) as i:
            count, slow = _emit_guided(layout, guide, folded[i])
            T.buffer_store(out, count, [i, 0])
            T.buffer_store(out, tirx.Cast("int64", slow), [i, 1])
    lib = tvm.compile(builder.get(), target=TARGET)
    result = tvm.runtime.tensor(np.zeros((n, 2), dtype=np.int64))
    lib(tvm.runtime.tensor(values), result)
    count, slow = result.numpy().T
    left = np.array(table.left_thresholds(), dtype=np.int64)
    exact = np.searchsorted(left, values, side="right")
    decided = slow == 0
    np.testing.assert_array_equal(count[decided], exact[decided])
    top = (values & ((1 << layout.shift) - 1)) >> layout.drop
    starts = (values >> layout.shift) << layout.shift
    nxt = np.array(
        [search_values[int(np.searchsorted(search_values, s, side="left"))] for s in starts]
    )
    ties = ((nxt - starts) < (1 << layout.shift)) & (((nxt - starts) >> layout.drop) == top)
    assert np.all(slow[ties] == 1) and ties.sum() > 10
    assert decided.mean() > 0.5  # the entry decides most of them


def _relax_module(table, shapes) -> tvm.IRModule:
    """main(key, ctr) -> tuple of noise tensors, one call_tir per (batch, num_coords) shape."""
    builder = relax.BlockBuilder()
    key = relax.Var("key", relax.TensorType((2,), "int64"))
    ctr = relax.Var("ctr", relax.TensorType((3,), "int64"))
    with builder.function("main", [key, ctr]):
        with builder.dataflow():
            outs = []
            for shape in shapes:
                gv = builder.add_func(noise_primfunc(table, *shape), "noise")
                out_ty = relax.TensorType(shape, "int16")
                outs.append(builder.emit(relax.call_tir(gv, [key, ctr], out_ty=out_ty)))
            out = builder.emit_output(relax.Tuple(outs))
        builder.emit_func_output(out)
    return builder.get()


def test_relax_call_tir_runs_and_is_integer_only():
    table = _table(0.12, 64)
    mod = _relax_module(table, [(4, 9), (2, 9)])  # two noise PrimFuncs in one module
    assert check_integer_only(mod) == []
    assert check_integer_only(lower(mod, "host")) == []
    vm = relax.VirtualMachine(tvm.compile(mod, target=TARGET), tvm.cpu())
    seed, stream, offset = 2**64 - 2, 2**33 + 1, 17
    first, second = (t.numpy() for t in vm["main"](*_inputs(seed, stream, offset)))
    expected = sample_noise_numpy(table, seed, stream, offset, 4, 9)
    np.testing.assert_array_equal(first, expected)
    np.testing.assert_array_equal(second, expected[:2])


@pytest.mark.parametrize("bits", [32, 64])
def test_primfunc_has_no_floating_point(bits):
    prim = noise_primfunc(_table(1.0, bits), 2, 5)
    assert check_integer_only(tvm.IRModule({"noise": prim})) == []
    assert "global_symbol" not in prim.attrs  # private: named by the GlobalVar it is added as
    assert prim.attrs["tirx.noalias"] and prim.attrs["tirx.is_scheduled"]
    named = noise_primfunc(_table(1.0, bits), 2, 5, global_symbol="draw_noise")
    assert named.attrs["global_symbol"] == "draw_noise"
    assert [p.name for p in prim.params] == ["key", "ctr", "out"]


def test_counter_ranges_split_into_batches():
    table = _table(0.12, 64)
    seed, stream = 99, 2**40 + 3
    whole = sample_noise_numpy(table, seed, stream, 0, 10, 5)
    parts = [
        sample_noise_numpy(table, seed, stream, 0, 3, 5),
        sample_noise_numpy(table, seed, stream, 3, 7, 5),
    ]
    np.testing.assert_array_equal(whole, np.concatenate(parts))
    # The noise of a coordinate does not depend on how many coordinates are drawn.
    np.testing.assert_array_equal(sample_noise_numpy(table, seed, stream, 0, 10, 9)[:, :5], whole)
    tvm_whole = _run_tvm(_compiled(0.12, 64, 10, 5), seed, stream, 0, (10, 5))
    tvm_parts = [
        _run_tvm(_compiled(0.12, 64, 3, 5), seed, stream, 0, (3, 5)),
        _run_tvm(_compiled(0.12, 64, 7, 5), seed, stream, 3, (7, 5)),
    ]
    np.testing.assert_array_equal(tvm_whole, whole)
    np.testing.assert_array_equal(np.concatenate(tvm_parts), whole)
    single = _run_tvm(_compiled(0.12, 64, 1, 1), seed, stream, 4, (1, 1))
    assert single[0, 0] == whole[4, 0]


def test_tvm_rejects_out_of_range_words_and_offsets():
    lib = _compiled(0.12, 64, 1, 1)
    out = tvm.runtime.tensor(np.zeros((1, 1), dtype="int16"))

    def call(key, ctr):
        lib(
            tvm.runtime.tensor(np.array(key, np.int64)),
            tvm.runtime.tensor(np.array(ctr, np.int64)),
            out,
        )

    call([2**32 - 1, 0], [0, 2**32 - 1, 2**32 - 1])  # the largest valid words and offset
    with pytest.raises(Exception, match="must lie in"):
        call([2**32, 0], [0, 0, 0])
    with pytest.raises(Exception, match="must lie in"):
        call([0, 0], [-1, 0, 0])
    with pytest.raises(Exception, match="must not exceed"):
        call([0, 0], [0, 0, 2**32])


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((-1, 0, 0, 1, 1), "seed"),
        ((2**64, 0, 0, 1, 1), "seed"),
        ((True, 0, 0, 1, 1), "seed"),
        ((0, 2**64, 0, 1, 1), "stream"),
        ((0, 0, -1, 1, 1), "sample_offset"),
        ((0, 0, 2**32 - 1, 2, 1), "exceeds 2"),
        ((0, 0, 0, 0, 1), "batch"),
        ((0, 0, 0, 1, 0), "num_coords"),
        ((0, 0, 0, 1.0, 1), "batch"),
    ],
)
def test_numpy_reference_validates_arguments(args, match):
    with pytest.raises(IntSmoothError, match=match):
        sample_noise_numpy(_table(0.12, 64), *args)


def test_bad_table_or_shape_for_primfunc():
    with pytest.raises(IntSmoothError, match="NoiseTable"):
        noise_primfunc("table", 1, 1)
    with pytest.raises(IntSmoothError, match="batch"):
        noise_primfunc(_table(0.12, 64), 0, 1)
    with pytest.raises(IntSmoothError, match="2\\^31"):
        noise_primfunc(_table(0.12, 64), 2**16, 2**15)
    with pytest.raises(IntSmoothError, match="seed"):
        noise_call_args(-1, 0, 0)
    with pytest.raises(IntSmoothError, match="sample_offset"):
        noise_call_args(0, 0, 2**32)


def _pooled_chisquare(draws: np.ndarray, table) -> float:
    """p-value of Pearson's chi-square against the exact pmf, adjacent bins pooled to expected >= 5.

    Bins are merged left to right until each merged bin expects at least 5 draws (a short
    remainder at the right end joins the last bin).
    """
    observed = np.bincount(draws.ravel().astype(np.int64) + table.K, minlength=2 * table.K + 1)
    pmf = table.exact_pmf()
    expected = pmf / pmf.sum() * draws.size
    obs, exp = [], []
    acc_obs, acc_exp = 0, 0.0
    for o, e in zip(observed, expected, strict=True):
        acc_obs, acc_exp = acc_obs + o, acc_exp + e
        if acc_exp >= 5:
            obs.append(acc_obs)
            exp.append(acc_exp)
            acc_obs, acc_exp = 0, 0.0
    obs[-1] += acc_obs
    exp[-1] += acc_exp
    assert min(exp) >= 5 and sum(obs) == draws.size and len(obs) > 20
    return stats.chisquare(obs, exp).pvalue


@pytest.mark.parametrize("sigma", [0.12, 0.25, 0.5, 1.0])
def test_chi_square_goodness_of_fit_numpy(sigma):
    table = _table(sigma, 64)
    draws = sample_noise_numpy(
        table,
        seed=20240601 + int(sigma * 100),
        stream=7,
        sample_offset=0,
        batch=1000,
        num_coords=1000,
    )
    assert _pooled_chisquare(draws, table) > 1e-6


def test_chi_square_detects_a_two_percent_error_in_sigma():
    draws = sample_noise_numpy(_table(0.25, 64), 1, 7, 0, batch=1000, num_coords=1000)
    assert _pooled_chisquare(draws, _table(0.255, 64)) < 1e-6


def test_chi_square_goodness_of_fit_tvm_32_bit():
    lib = _compiled(0.5, 32, BATCH, COORDS)
    draws = np.concatenate(
        [_run_tvm(lib, 31337, 2, offset, (BATCH, COORDS)) for offset in range(0, 6 * BATCH, BATCH)]
    )
    assert draws.size > 10**6
    assert _pooled_chisquare(draws, _table(0.5, 32)) > 1e-6


def _assert_uncorrelated(x: np.ndarray, y: np.ndarray) -> None:
    """|Pearson r| below the two-sided 1e-6 quantile of its null law, N(0, 1/n) for n pairs."""
    x, y = x.ravel().astype(np.float64), y.ravel().astype(np.float64)
    r = np.corrcoef(x, y)[0, 1]
    assert abs(r) < Z_1E6 / np.sqrt(x.size), f"r = {r} over {x.size} pairs"


@pytest.mark.parametrize("bits", [32, 64])
def test_no_correlation_between_neighbours(bits):
    table = _table(0.25, bits)
    draws = sample_noise_numpy(
        table, seed=2**63 + 11, stream=3, sample_offset=0, batch=1000, num_coords=1000
    )
    _assert_uncorrelated(draws[:, :-1], draws[:, 1:])  # neighbouring coordinates
    _assert_uncorrelated(draws[:-1, :], draws[1:, :])  # neighbouring samples
    per_block = table.per_philox_block
    _assert_uncorrelated(draws[:, 0::per_block], draws[:, 1::per_block])  # words of one block
    next_seed = sample_noise_numpy(
        table, seed=2**63 + 12, stream=3, sample_offset=0, batch=1000, num_coords=1000
    )
    _assert_uncorrelated(draws, next_seed)
    next_stream = sample_noise_numpy(
        table, seed=2**63 + 11, stream=4, sample_offset=0, batch=1000, num_coords=1000
    )
    _assert_uncorrelated(draws, next_stream)


def test_split_words_and_call_args():
    assert split_words(2**32 + 5, "seed") == (5, 1)
    assert split_words(2**64 - 1, "stream") == (2**32 - 1, 2**32 - 1)
    key, ctr = noise_call_args(2**63, 2**32 + 7, 12)
    assert key.tolist() == [0, 2**31] and ctr.tolist() == [7, 1, 12]
