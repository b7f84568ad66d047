"""FloatSmoothedClassifier, the float reference: exact vote distributions, clip policy, replay.

With logits (x[0], 0), class 0 wins exactly when the noisy first pixel is >= 0. Unclipped, that
happens with probability Phi(p / sigma) for first pixel p in [0, 1]; clipped to [0, 1] it always
happens. The counts are checked against that exact binomial distribution with scipy.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx_models import first_pixel_model
from scipy import stats

from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.runtime import FloatSmoothedClassifier

SIGMA = 0.25
N = 20000


def image(first_pixel: int) -> np.ndarray:
    img = np.full((1, 4, 4), 128, np.uint8)
    img[0, 0, 0] = first_pixel
    return img


@pytest.mark.parametrize("first_pixel", [0, 51, 255])
def test_unclipped_votes_follow_the_exact_binomial(first_pixel):
    clf = FloatSmoothedClassifier(first_pixel_model(), SIGMA, batch=1000)
    counts = clf.counts(image(first_pixel), N, seed=7, stream=3)
    p = stats.norm.cdf(first_pixel / 255 / SIGMA)
    assert counts.sum() == N
    assert stats.binomtest(int(counts[0]), N, p).pvalue > 1e-6


@pytest.mark.parametrize("first_pixel", [0, 51])
def test_clipped_pixels_never_go_negative(first_pixel):
    clf = FloatSmoothedClassifier(first_pixel_model(), SIGMA, batch=1000, clip="clip")
    np.testing.assert_array_equal(clf.counts(image(first_pixel), N, seed=7), [N, 0])


def test_counts_replay_by_seed_and_stream_and_not_by_batch():
    small = FloatSmoothedClassifier(first_pixel_model(), SIGMA, batch=100)
    counts = small.counts(image(0), 1000, seed=2**64 - 1, stream=5)
    np.testing.assert_array_equal(counts, small.counts(image(0), 1000, seed=2**64 - 1, stream=5))
    assert not np.array_equal(counts, small.counts(image(0), 1000, seed=2**64 - 1, stream=6))
    # Seeds above 2^63 must not collapse onto each other (float64 has 53 bits).
    assert not np.array_equal(counts, small.counts(image(0), 1000, seed=2**64 - 2, stream=5))
    large = FloatSmoothedClassifier(first_pixel_model(), SIGMA, batch=300)
    np.testing.assert_array_equal(counts, large.counts(image(0), 1000, seed=2**64 - 1, stream=5))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"sigma": 0.0}, "sigma must be > 0"), ({"clip": "wrap"}, "clip policy 'wrap'")],
)
def test_bad_arguments(kwargs, message):
    args = {"sigma": SIGMA, **kwargs}
    with pytest.raises(IntSmoothError, match=message):
        FloatSmoothedClassifier(first_pixel_model(), **args)
