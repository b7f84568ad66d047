"""CountVotes: golden-IR test of the rewrite, and compiled counts against numpy's argmax.

numpy's ``argmax`` returns the first maximal index, which is the documented tie rule (ties go to
the lowest class), so ``bincount(argmax(logits[:valid]))`` is the independent reference.
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.relax import op as R

from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.transform.count_votes import CountVotes

BATCH, CLASSES = 6, 4


def _logits_module(dtype: str = "int32", shape=(BATCH, CLASSES)) -> tvm.IRModule:
    """``main(x: int16[B, K]) -> dtype[B, K]``: the logits are the input, widened."""
    x = relax.Var("x", relax.TensorType(list(shape), "int16"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(R.astype(x, dtype))
        bb.emit_func_output(out)
    return bb.get()


def _expected() -> tvm.IRModule:
    x = relax.Var("x", relax.TensorType([BATCH, CLASSES], "int16"))
    valid = relax.Var("valid", relax.TensorType([1], "int64"))
    classes_row = relax.const(np.arange(CLASSES, dtype=np.int64).reshape(1, CLASSES), "int64")
    rows = relax.const(np.arange(BATCH, dtype=np.int64).reshape(BATCH, 1), "int64")
    bb = relax.BlockBuilder()
    with bb.function("main", [x, valid]):
        with bb.dataflow():
            logits = bb.emit(R.astype(x, "int32"))
            pred = bb.emit(R.reshape(R.argmax(logits, axis=1), [BATCH, 1]))
            hit = bb.emit(R.equal(pred, classes_row))
            counted = bb.emit(R.logical_and(hit, R.less(rows, valid)))
            out = bb.emit_output(R.sum(R.astype(counted, "int32"), axis=[0]))
        bb.emit_func_output(out)
    return bb.get()


def test_count_votes_matches_hand_built_module():
    tvm.ir.assert_structural_equal(CountVotes()(_logits_module()), _expected())


@pytest.fixture(scope="module")
def compiled_votes():
    ex = tvm.compile(CountVotes()(_logits_module()), target="llvm")
    vm = relax.VirtualMachine(ex, tvm.cpu())

    def votes(logits: np.ndarray, valid: int) -> np.ndarray:
        out = vm["main"](
            tvm.runtime.tensor(logits.astype(np.int16)),
            tvm.runtime.tensor(np.array([valid], np.int64)),
        )
        return out.numpy()

    return votes


def _numpy_votes(logits: np.ndarray, valid: int) -> np.ndarray:
    return np.bincount(np.argmax(logits[:valid], axis=1), minlength=CLASSES)


def test_ties_go_to_the_lowest_class(compiled_votes):
    logits = np.array(
        [
            [5, 5, 5, 5],  # all tied: class 0
            [1, 7, 7, 0],  # 1 and 2 tied: class 1
            [-3, -4, -3, -3],  # 0, 2, 3 tied: class 0
            [0, 2, 9, 9],  # 2 and 3 tied: class 2
            [-9, -9, -9, -8],  # unique maximum: class 3
            [4, 6, 1, 6],  # 1 and 3 tied: class 1
        ]
    )
    votes = compiled_votes(logits, BATCH)
    np.testing.assert_array_equal(votes, [2, 2, 1, 1])
    np.testing.assert_array_equal(votes, _numpy_votes(logits, BATCH))


@pytest.mark.parametrize("valid", [0, 1, 3, 5, BATCH])
def test_valid_counts_only_the_first_rows(compiled_votes, valid):
    rng = np.random.default_rng(valid)
    logits = rng.integers(-3, 3, (BATCH, CLASSES))  # a narrow range: many ties
    votes = compiled_votes(logits, valid)
    assert votes.sum() == valid
    np.testing.assert_array_equal(votes, _numpy_votes(logits, valid))


def test_random_logits_with_ties_match_numpy(compiled_votes):
    rng = np.random.default_rng(7)
    for _ in range(50):
        logits = rng.integers(-2, 2, (BATCH, CLASSES))
        np.testing.assert_array_equal(compiled_votes(logits, BATCH), _numpy_votes(logits, BATCH))


def test_float_logits_are_rejected():
    with pytest.raises(IntSmoothError, match="integer"):
        CountVotes()(_logits_module(dtype="float32"))


def test_logits_that_are_not_a_matrix_are_rejected():
    with pytest.raises(IntSmoothError, match=r"\[B, K\]"):
        CountVotes()(_logits_module(shape=(BATCH, CLASSES, 2)))
