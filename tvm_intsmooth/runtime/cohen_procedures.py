"""The noise streams of CERTIFY and PREDICT, which keep their samples independent.

Every noisy sample is addressed by (seed, stream, sample index). For the image with dataset index
``i``, one run with one seed draws:

- the n0 selection samples of CERTIFY from stream ``2 i``,
- the n estimation samples of CERTIFY from stream ``2 i + 1``,
- the n samples of PREDICT from stream ``2^63 + i``.

These streams are pairwise distinct for every ``i`` in range (indices lie below 2^62, so
certify streams stay below 2^63 and predict streams below 2^63 + 2^62), so the estimation samples
are independent of the selection that chose the class, as Cohen et al.'s argument requires, and
no two images share noise. Streams from 3 * 2^62 on are the compiler's calibration noise
(``pipeline.calibrate.CALIBRATION_STREAM_BASE``), which no certificate can draw whatever its
seed. A row of a results file is replayed from its seed and index alone.
"""

from __future__ import annotations

import numpy as np

from tvm_intsmooth.errors import IntSmoothError

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
