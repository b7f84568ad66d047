"""Philox-4x32: Random123 known answers for the numpy reference and the compiled TIR.

The known-answer vectors are the ``philox4x32`` lines of Random123's ``tests/kat_vectors``
(DEShawResearch/random123; columns: rounds, counter[4], key[2], expected[4]).
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import tirx
from tvm.script.ir_builder import IRBuilder
from tvm.tirx.script import builder as T

from tvm_intsmooth.smoothing.philox import (
    PHILOX_M0,
    PHILOX_M1,
    PHILOX_W0,
    PHILOX_W1,
    emit_philox4x32,
    emit_philox4x32_lanes,
    emit_round_keys,
    philox4x32,
)

# Lines of kat_vectors: name, rounds, counter[4], key[2], expected[4] (hex words).
KAT_LINES = [
    "philox4x32 7 00000000 00000000 00000000 00000000 00000000 00000000"
    "   5f6fb709 0d893f64 4f121f81 4f730a48",
    "philox4x32 7 ffffffff ffffffff ffffffff ffffffff ffffffff ffffffff"
    "   5207ddc2 45165e59 4d8ee751 8c52f662",
    "philox4x32 7 243f6a88 85a308d3 13198a2e 03707344 a4093822 299f31d0"
    "   4dfccaba 190a87f0 c47362ba b6b5242a",
    "philox4x32 10 00000000 00000000 00000000 00000000 00000000 00000000"
    "   6627e8d5 e169c58d bc57ac4c 9b00dbd8",
    "philox4x32 10 ffffffff ffffffff ffffffff ffffffff ffffffff ffffffff"
    "   408f276d 41c83b0e a20bc7c6 6d5451fd",
    "philox4x32 10 243f6a88 85a308d3 13198a2e 03707344 a4093822 299f31d0"
    "   d16cfe09 94fdcceb 5001e420 24126ea1",
]


def _kat(rounds: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = [line.split() for line in KAT_LINES]
    words = [[int(w, 16) for w in row[2:]] for row in rows if int(row[1]) == rounds]
    table = np.array(words, dtype=np.uint64).astype(np.uint32)
    return table[:, :4], table[:, 4:6], table[:, 6:]


TARGET = tvm.target.Target({"kind": "llvm", "num-cores": 2})


def _compile_batch(emit, n: int, dtype: str, vectorize: bool = False):
    """Compile out[i] = emit(ctr[i], key[i]) for n rows of ``dtype`` words."""
    with IRBuilder() as builder, T.prim_func():
        T.func_name("philox_batch")
        T.func_attr({"tirx.noalias": True})
        ctr = T.arg("ctr", T.buffer((n, 4), dtype))
        key = T.arg("key", T.buffer((n, 2), dtype))
        out = T.arg("out", T.buffer((n, 4), dtype))
        lanes = 8 if vectorize else 1
        inner_loop = T.vectorized if vectorize else T.serial
        with T.serial(0, n // lanes) as outer, inner_loop(0, lanes) as inner:
            i = outer * lanes + inner
            words = emit([ctr[i, j] for j in range(4)], [key[i, j] for j in range(2)])
            for j in range(4):
                T.buffer_store(out, words[j], [i, j])
    return tvm.compile(builder.get(), target=TARGET)


def _run_batch(lib, counter: np.ndarray, key: np.ndarray, dtype: str) -> np.ndarray:
    out = tvm.runtime.tensor(np.zeros(counter.shape, dtype=dtype))
    lib(tvm.runtime.tensor(counter.astype(dtype)), tvm.runtime.tensor(key.astype(dtype)), out)
    return out.numpy().astype(np.uint32)


def _random_words(shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2**32, shape, dtype=np.uint64).astype(np.uint32)


@pytest.mark.parametrize("rounds", [7, 10])
def test_numpy_reference_matches_random123_known_answers(rounds):
    counter, key, expected = _kat(rounds)
    np.testing.assert_array_equal(philox4x32(counter, key, rounds=rounds), expected)


def test_numpy_reference_broadcasts_key_and_is_a_bijection_on_counters():
    counter = np.zeros((256, 4), dtype=np.uint32)
    counter[:, 0] = np.arange(256)
    out = philox4x32(counter, np.array([1, 2], dtype=np.uint32))
    assert out.shape == (256, 4) and out.dtype == np.uint32
    assert len({tuple(row) for row in out}) == 256  # a keyed permutation: no collisions


@pytest.fixture(scope="module")
def safe_lib():
    return _compile_batch(emit_philox4x32, 64, "int64")


def test_safe_tir_matches_known_answers_and_numpy(safe_lib):
    counter, key, expected = _kat(10)
    counter = np.concatenate([counter, _random_words((61, 4), seed=1)])
    key = np.concatenate([key, _random_words((61, 2), seed=2)])
    got = _run_batch(safe_lib, counter, key, "int64")
    np.testing.assert_array_equal(got[:3], expected)
    np.testing.assert_array_equal(got, philox4x32(counter, key))


def test_safe_tir_with_compile_time_constant_inputs_matches_known_answers():
    counter, key, expected = _kat(10)
    with IRBuilder() as builder, T.prim_func():
        T.func_name("philox_constants")
        out = T.arg("out", T.buffer((3, 4), "int64"))
        for row in range(3):
            words = emit_philox4x32(
                [tirx.const(int(w), "int64") for w in counter[row]],
                [tirx.const(int(w), "int64") for w in key[row]],
            )
            for j in range(4):
                T.buffer_store(out, words[j], [row, j])
    lib = tvm.compile(builder.get(), target=TARGET)
    result = tvm.runtime.tensor(np.zeros((3, 4), dtype="int64"))
    lib(result)
    np.testing.assert_array_equal(result.numpy(), expected.astype(np.int64))


def _u32(value: int):
    return tirx.const(value, "uint32")


def _u64(value: int):
    return tirx.const(value, "uint64")


def _emit_naive_unsigned(counter, key, rounds: int = 10):
    """Philox as usually written: uint32 words, uint64 products, truncating casts, wrapping adds."""
    c0, c1, c2, c3 = (T.Bind(c) for c in counter)
    k0, k1 = (T.Bind(k) for k in key)
    for r in range(rounds):
        if r > 0:
            k0, k1 = T.Bind(k0 + _u32(PHILOX_W0)), T.Bind(k1 + _u32(PHILOX_W1))  # wraps
        p0 = T.Bind(tirx.Cast("uint64", c0) * _u64(PHILOX_M0))
        p1 = T.Bind(tirx.Cast("uint64", c2) * _u64(PHILOX_M1))
        hi0, lo0 = tirx.Cast("uint32", p0 >> _u64(32)), tirx.Cast("uint32", p0)
        hi1, lo1 = tirx.Cast("uint32", p1 >> _u64(32)), tirx.Cast("uint32", p1)
        c0, c1, c2, c3 = T.Bind(hi1 ^ c1 ^ k0), T.Bind(lo1), T.Bind(hi0 ^ c3 ^ k1), T.Bind(lo0)
    return [c0, c1, c2, c3]


def test_naive_wraparound_form_on_this_tvm():
    """What TVM 0.27 (LLVM 22) does with Philox written with unsigned wrap-around arithmetic.

    Observed here, and pinned by this test: uint32 words, uint64 products, truncating
    uint64 -> uint32 casts and wrapping uint32 key additions give the right words with runtime
    (buffer) inputs, in scalar and in vectorized loops; the same code with compile-time constant
    counter and key does not build, because TVM's constant folder refuses the truncating cast
    ("Literal value ... exceeds maximum of uint32"). The safe form is right in all these
    settings (the other tests), and it is the one the sampler uses.
    """
    counter = np.concatenate([_kat(10)[0], _random_words((61, 4), seed=3)])
    key = np.concatenate([_kat(10)[1], _random_words((61, 2), seed=4)])
    expected = philox4x32(counter, key)
    assert (expected[:3] == _kat(10)[2]).all()
    for vectorize in (False, True):
        naive = _compile_batch(_emit_naive_unsigned, 64, "uint32", vectorize=vectorize)
        np.testing.assert_array_equal(_run_batch(naive, counter, key, "uint32"), expected)

    with IRBuilder() as builder, T.prim_func():
        T.func_name("naive_constants")
        out = T.arg("out", T.buffer((4,), "uint32"))
        c, k = _kat(10)[0][2], _kat(10)[1][2]
        words = _emit_naive_unsigned([_u32(int(w)) for w in c], [_u32(int(w)) for w in k])
        for j in range(4):
            T.buffer_store(out, words[j], [j])
    with pytest.raises(Exception, match="exceeds maximum of uint32"):
        tvm.compile(builder.get(), target=TARGET)


def _compile_vectorized_with_lane_state(n: int, lanes: int):
    with IRBuilder() as builder, T.prim_func():
        T.func_name("philox_lanes")
        T.func_attr({"tirx.noalias": True})
        ctr = T.arg("ctr", T.buffer((n, 4), "int64"))
        key = T.arg("key", T.buffer((n, 2), "int64"))
        out = T.arg("out", T.buffer((n, 4), "int64"))
        with T.serial(0, n // lanes) as outer:
            state = T.alloc_buffer((6, lanes), "int64", scope="local")
            with T.vectorized(0, lanes) as lane:
                i = outer * lanes + lane
                words = emit_philox4x32(
                    [ctr[i, j] for j in range(4)],
                    [key[i, j] for j in range(2)],
                    state=state,
                    lane=lane,
                )
                for j in range(4):
                    T.buffer_store(out, words[j], [i, j])
    return tvm.compile(builder.get(), target=TARGET)


def test_safe_tir_in_vectorized_loops():
    """With per-lane state it is right; with its default inner allocation TVM 0.27 gets it wrong.

    VectorizeLoop turns a buffer allocated inside the vectorized loop into one scalar shared by
    all lanes, so every row comes out the same; the docstring of emit_philox4x32 says so.
    """
    counter, key = _random_words((64, 4), seed=5), _random_words((64, 2), seed=6)
    expected = philox4x32(counter, key)
    lib = _compile_vectorized_with_lane_state(64, 8)
    np.testing.assert_array_equal(_run_batch(lib, counter, key, "int64"), expected)
    shared = _run_batch(
        _compile_batch(emit_philox4x32, 64, "int64", vectorize=True), counter, key, "int64"
    )
    assert (shared != expected).any()


def test_emit_rejects_wrong_word_counts():
    with pytest.raises(ValueError, match="4 counter words"):
        emit_philox4x32([tirx.const(0, "int64")] * 3, [tirx.const(0, "int64")] * 2)
    with pytest.raises(ValueError, match="end in 4 words"):
        philox4x32(np.zeros(3, np.uint32), np.zeros(2, np.uint32))
    with pytest.raises(ValueError, match="state and lane"):
        emit_philox4x32([tirx.const(0, "int64")] * 4, [tirx.const(0, "int64")] * 2, lane=0)


@pytest.mark.parametrize("lanes", [8, 16])
def test_lanes_form_in_vectorized_loops_matches_known_answers_and_numpy(lanes):
    """The sampler's form: 32-bit words in uint64 lanes, one key per call (a vpmuludq each)."""
    n = 64
    with IRBuilder() as builder, T.prim_func():
        T.func_name("philox_lanes_u64")
        T.func_attr({"tirx.noalias": True})
        ctr = T.arg("ctr", T.buffer((n, 4), "int64"))
        key = T.arg("key", T.buffer((2,), "int64"))
        out = T.arg("out", T.buffer((n, 4), "int64"))
        round_keys = emit_round_keys([key[0], key[1]])
        with T.serial(0, n // lanes) as outer:
            state = T.alloc_buffer((4, lanes), "uint64", scope="local")
            with T.vectorized(0, lanes) as lane:
                i = outer * lanes + lane
                counter = [tirx.Cast("uint64", ctr[i, j]) for j in range(4)]
                words = emit_philox4x32_lanes(counter, round_keys, state, lane)
                for j in range(4):
                    T.buffer_store(out, tirx.Cast("int64", words[j]), [i, j])
    lib = tvm.compile(builder.get(), target=TARGET)
    kat_counter, kat_key, kat_expected = _kat(10)
    for row in range(3):  # each known answer has its own key
        counter = np.concatenate([kat_counter[row : row + 1], _random_words((n - 1, 4), row)])
        out = tvm.runtime.tensor(np.zeros((n, 4), dtype="int64"))
        lib(
            tvm.runtime.tensor(counter.astype("int64")),
            tvm.runtime.tensor(kat_key[row].astype("int64")),
            out,
        )
        got = out.numpy().astype(np.uint32)
        np.testing.assert_array_equal(got[0], kat_expected[row])
        np.testing.assert_array_equal(got, philox4x32(counter, kat_key[row]))
