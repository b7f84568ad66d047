"""CERTIFY and PREDICT on a vote counter, and the stream rules that keep their noise independent.

Every noisy sample is addressed by (seed, stream, sample index). For the image with dataset index
``i``, one run with one seed draws:

- the n0 selection samples of CERTIFY from stream ``2 i``,
- the n estimation samples of CERTIFY from stream ``2 i + 1``,
- the n samples of PREDICT from stream ``2^63 + i``.

These streams are pairwise distinct for every ``i`` in range (indices lie below 2^62, so
certify streams stay below 2^63 and predict streams below 2^63 + 2^62), so the estimation samples
are independent of the selection that chose the class, as Cohen et al.'s argument requires, and
no two images share noise. Streams from 3 * 2^62 on are the compiler's calibration noise
(``smoothing.api.CALIBRATION_STREAM_BASE``), which no certificate can draw whatever its seed. A row
of a results file is replayed from its seed and index alone.
"""

from __future__ import annotations

import numpy as np

from ..certify.cohen import Certificate, certify, predict
from ..errors import IntSmoothError

PREDICT_STREAM_BASE = 2**63
MAX_CERTIFY_INDEX = 2**62  # 2 i + 1 < 2^63: certify streams never reach the predict streams
MAX_PREDICT_INDEX = 2**62  # 2^63 + i < 3 * 2^62: predict streams never reach calibration's


def _check_index(index, limit: int) -> int:
    if isinstance(index, bool) or not isinstance(index, int | np.integer):
        raise IntSmoothError(f"index must be an integer (the image's dataset index), got {index!r}")
    if not 0 <= int(index) < limit:
        raise IntSmoothError(f"index must be in [0, 2^{limit.bit_length() - 1}), got {index}")
    return int(index)


def selection_stream(index: int) -> int:
    """The stream of CERTIFY's n0 selection samples for dataset index ``index``."""
    return 2 * _check_index(index, MAX_CERTIFY_INDEX)


def estimation_stream(index: int) -> int:
    """The stream of CERTIFY's n estimation samples for dataset index ``index``."""
    return 2 * _check_index(index, MAX_CERTIFY_INDEX) + 1


def predict_stream(index: int) -> int:
    """The stream of PREDICT's samples for dataset index ``index``."""
    return PREDICT_STREAM_BASE + _check_index(index, MAX_PREDICT_INDEX)


class CohenProcedures:
    """CERTIFY and PREDICT for a class with ``counts(x, n, seed, stream, progress)``, ``sigma``
    and ``tv_bound`` (the integer :class:`SmoothedClassifier` and the float reference)."""

    sigma: float
    tv_bound: float

    def certify(
        self,
        x: np.ndarray,
        n0: int,
        n: int,
        alpha: float,
        *,
        index: int = 0,
        seed: int,
        progress: bool | None = None,
    ) -> Certificate:
        """Cohen et al.'s CERTIFY for image ``x``: the class and certified L2 radius, or abstain.

        ``n0`` samples from stream ``2 index`` choose the class, ``n`` fresh samples from stream
        ``2 index + 1`` bound its probability (Clopper-Pearson at ``alpha``, minus the sampler's
        TV bound); see :func:`tvm_intsmooth.certify.certify`. ``index`` is the image's dataset
        index (it keeps images' noise apart); ``seed`` (64-bit) makes the result replayable:
        record both.
        """
        selection = self.counts(x, n0, seed, selection_stream(index), progress)
        estimation = self.counts(x, n, seed, estimation_stream(index), progress)
        return certify(selection, estimation, self.sigma, alpha, self.tv_bound)

    def predict(
        self,
        x: np.ndarray,
        n: int,
        alpha: float,
        *,
        index: int = 0,
        seed: int,
        progress: bool | None = None,
    ) -> int:
        """Cohen et al.'s PREDICT for image ``x``: the top class, or ``ABSTAIN`` (-1) when its
        lead over the runner-up is not significant at ``alpha`` (binomial test).

        The ``n`` samples come from stream ``2^63 + index``, apart from every CERTIFY stream
        and from the calibration streams.
        """
        return predict(self.counts(x, n, seed, predict_stream(index), progress), alpha)
