"""What every smoothed classifier offers: vote counts, and CERTIFY and PREDICT built on them.

The integer :class:`~tvm_intsmooth.runtime.SmoothedClassifier` (here or over TVM RPC), the float
reference :class:`~tvm_intsmooth.runtime.FloatSmoothedClassifier` and the sharded
:class:`~tvm_intsmooth.remote.RemoteCertifier` implement :meth:`BaseSmoothedClassifier.counts`;
the procedures draw their noise from the streams of :mod:`.cohen_procedures`.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from tvm_intsmooth.certify.cohen import Certificate, certify, predict
from tvm_intsmooth.errors import DataError, IntSmoothError
from tvm_intsmooth.runtime.cohen_procedures import (
    estimation_stream,
    predict_stream,
    selection_stream,
)

MAX_U64 = 2**64


def check_u64(value, name: str) -> int:
    """``value`` as a Python int if it is an integer in [0, 2^64), else an IntSmoothError."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise IntSmoothError(f"{name} must be an integer, got {value!r}")
    if not 0 <= int(value) < MAX_U64:
        raise IntSmoothError(f"{name} must be in [0, 2^64), got {value}")
    return int(value)


@dataclass(frozen=True)
class CertifyJob:
    """One image to certify: its dataset index (which fixes its noise streams) and pixels."""

    index: int
    image: np.ndarray


class BaseSmoothedClassifier(abc.ABC):
    """A smoothed classifier: ``counts`` of noisy samples, CERTIFY and PREDICT on them.

    Subclasses set ``input_shape`` (C, H, W), ``num_classes``, ``batch`` (samples per call),
    ``sigma`` (in [0, 1] pixel units) and ``tv_bound`` (the sampler's total variation bound,
    subtracted by CERTIFY), and implement :meth:`counts`.
    """

    input_shape: tuple[int, ...]
    num_classes: int
    batch: int
    sigma: float
    tv_bound: float

    @abc.abstractmethod
    def counts(
        self, x: np.ndarray, n: int, seed: int, stream: int = 0, progress: bool | None = None
    ) -> np.ndarray:
        """Vote counts (int64 [num_classes]) of samples 0..n-1 of ``stream`` under ``seed``
        (both 64-bit); ``progress``: a progress bar (None: for long runs)."""

    def check_n(self, n: int) -> int:
        """``n`` if one stream can draw that many samples, else an IntSmoothError."""
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
            raise IntSmoothError(f"n must be a positive integer, got {n!r}")
        return int(n)

    def check_image(self, x: np.ndarray) -> np.ndarray:
        """One image as uint8 [1, C, H, W], with clear errors for shape, dtype and range."""
        x = np.asarray(x)
        if x.dtype.kind not in "iu":
            raise DataError(f"image dtype {x.dtype}: expected integer pixels 0..255 (uint8)")
        if x.shape not in (self.input_shape, (1, *self.input_shape)):
            raise DataError(
                f"image shape {x.shape}: this model takes {' x '.join(map(str, self.input_shape))}"
            )
        if x.size and (x.min() < 0 or x.max() > 255):
            raise DataError(f"pixel values {x.min()}..{x.max()} outside 0..255")
        return np.ascontiguousarray(x.reshape(1, *self.input_shape).astype(np.uint8))

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

    def certify_many(
        self,
        jobs: Sequence[CertifyJob],
        n0: int,
        n: int,
        alpha: float,
        *,
        seed: int,
        progress: bool | None = None,
    ) -> Iterator[tuple[int, Certificate, float]]:
        """:meth:`certify` of every job, in job order: ``(index, Certificate, seconds)``."""
        for job in jobs:
            start = time.monotonic()
            cert = self.certify(
                job.image, n0, n, alpha, index=job.index, seed=seed, progress=progress
            )
            yield job.index, cert, time.monotonic() - start
