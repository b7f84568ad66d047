"""Stream separation, pinned: CERTIFY's n0 and n counts and PREDICT's counts come from three
disjoint stream ranges for every index, and the calibration noise lies in a fourth range that no
certificate can draw, whatever seed a user picks.

A recording counter stands in for the classifier, so the test sees exactly which (seed, stream,
n) each count came from; mutating a rule (say 2 i + 1 -> 2 i) makes it fail.
"""

from __future__ import annotations

import numpy as np
import pytest

from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.pipeline.calibrate import (
    CALIBRATION_SEED,
    CALIBRATION_STREAM_BASE,
    calibration_stream,
    noisy_calibration,
)
from tvm_intsmooth.runtime.base import BaseSmoothedClassifier
from tvm_intsmooth.runtime.cohen_procedures import (
    MAX_CERTIFY_INDEX,
    MAX_PREDICT_INDEX,
    estimation_stream,
    predict_stream,
    selection_stream,
)
from tvm_intsmooth.smoothing.noise_sampler import sample_noise_numpy
from tvm_intsmooth.smoothing.noise_table import rounded_gaussian_table


class Recorder(BaseSmoothedClassifier):
    """Counts that identify their stream: class (stream mod 3) wins every draw."""

    sigma, tv_bound = 0.25, 0.0

    def __init__(self):
        self.calls: list[tuple[int, int, int]] = []

    def counts(self, x, n, seed, stream, progress=None):
        self.calls.append((n, seed, stream))
        out = np.zeros(3, np.int64)
        out[stream % 3] = n
        return out


INDICES = [0, 1, 2, 3, 1000, 2**31, 2**32 + 1, MAX_CERTIFY_INDEX - 2, MAX_CERTIFY_INDEX - 1]


def _certify_streams(index: int) -> tuple[int, int]:
    rec = Recorder()
    rec.certify(None, 7, 11, 0.01, index=index, seed=5)
    (n0, seed0, s0), (n, seed1, s1) = rec.calls
    assert (n0, n, seed0, seed1) == (7, 11, 5, 5)  # n0 then n, both under the run's seed
    return s0, s1


def _predict_stream(index: int) -> int:
    rec = Recorder()
    rec.predict(None, 13, 0.01, index=index, seed=5)
    ((n, _, stream),) = rec.calls
    assert n == 13
    return stream


def test_selection_estimation_and_predict_streams_are_disjoint():
    rng = np.random.default_rng(0)
    indices = INDICES + [int(i) for i in rng.integers(0, MAX_CERTIFY_INDEX, 200, np.int64)]
    selection, estimation, prediction = set(), set(), set()
    for index in indices:
        s0, s1 = _certify_streams(index)
        assert s0 != s1, f"index {index}: selection and estimation share stream {s0}"
        assert (s0, s1) == (selection_stream(index), estimation_stream(index))
        selection.add(s0)
        estimation.add(s1)
        prediction.add(_predict_stream(index))
    n = len(set(indices))
    assert len(selection) == len(estimation) == len(prediction) == n  # no two images share
    assert not selection & estimation and not selection & prediction
    assert not estimation & prediction


def test_stream_ranges_are_disjoint_for_every_index():
    """The ranges as intervals: selection even and estimation odd below 2^63, predict in
    [2^63, 2^63 + 2^62), calibration from 3 * 2^62; the end points of each rule are checked."""
    last = MAX_CERTIFY_INDEX - 1
    assert {selection_stream(i) % 2 for i in (0, 1, last)} == {0}
    assert {estimation_stream(i) % 2 for i in (0, 1, last)} == {1}
    assert estimation_stream(last) < predict_stream(0)
    assert predict_stream(MAX_PREDICT_INDEX - 1) < CALIBRATION_STREAM_BASE
    for rule, limit in (
        (selection_stream, MAX_CERTIFY_INDEX),
        (estimation_stream, MAX_CERTIFY_INDEX),
        (predict_stream, MAX_PREDICT_INDEX),
    ):
        with pytest.raises(IntSmoothError, match="index"):
            rule(limit)
    assert calibration_stream(0) == CALIBRATION_STREAM_BASE
    assert calibration_stream(2**62 - 1) == 2**64 - 1
    with pytest.raises(IntSmoothError):
        calibration_stream(2**62)


def test_no_seed_reproduces_the_calibration_noise():
    """Even with the calibration seed, CERTIFY's and PREDICT's draws differ from the noise the
    quantizer was calibrated on (index 0's selection stream included)."""
    table = rounded_gaussian_table(0.25)
    shape, coords = (1, 4, 4), 16
    images = np.zeros((8, *shape), np.uint8)
    (calibration,) = noisy_calibration(images, shape, table, "none", batch_size=8)
    assert calibration.any()
    for stream in (selection_stream(0), estimation_stream(0), predict_stream(0)):
        drawn = sample_noise_numpy(table, CALIBRATION_SEED, stream, 0, 8, coords)
        assert not np.array_equal(drawn.reshape(calibration.shape), calibration)
    expected = sample_noise_numpy(table, CALIBRATION_SEED, CALIBRATION_STREAM_BASE, 0, 8, coords)
    np.testing.assert_array_equal(calibration, expected.reshape(calibration.shape))
