"""What every smoothed classifier offers: vote counts, and CERTIFY and PREDICT built on them.

The integer :class:`~tvm_intsmooth.runtime.SmoothedClassifier` (here or over TVM RPC), the float
reference :class:`~tvm_intsmooth.runtime.FloatSmoothedClassifier` and the sharded
:class:`~tvm_intsmooth.remote.RemoteCertifier` implement :meth:`BaseSmoothedClassifier.counts`
over any range of sample indices; the procedures draw their noise from the streams of
:mod:`.cohen_procedures`: fixed-n CERTIFY (Cohen et al.) by default, sequential certification at
chosen radii (:mod:`tvm_intsmooth.certify.sequential`) when ``radii`` are given.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from tvm_intsmooth.certify.cohen import Certificate, certify, predict
from tvm_intsmooth.certify.sequential import (
    SequentialCertificate,
    certify_sequential,
    check_radii,
    checkpoints,
)
from tvm_intsmooth.errors import DataError, IntSmoothError
from tvm_intsmooth.runtime.cohen_procedures import (
    estimation_stream,
    predict_stream,
    selection_stream,
)

MAX_U64 = 2**64
DEFAULT_N0 = 100  # CERTIFY's selection samples (Cohen et al.)
DEFAULT_N = 100_000  # CERTIFY's estimation samples, and the sequential procedure's n_max


def check_u64(value, name: str) -> int:
    """``value`` as a Python int if it is an integer in [0, 2^64), else an IntSmoothError."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise IntSmoothError(f"{name} must be an integer, got {value!r}")
    if not 0 <= int(value) < MAX_U64:
        raise IntSmoothError(f"{name} must be in [0, 2^64), got {value}")
    return int(value)


def check_start(start) -> int:
    """``start`` (the first sample index of a range) as a Python int >= 0, else an
    IntSmoothError."""
    if isinstance(start, bool) or not isinstance(start, int | np.integer) or start < 0:
        raise IntSmoothError(f"start must be an integer >= 0 (a sample index), got {start!r}")
    return int(start)


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
        self,
        x: np.ndarray,
        n: int,
        seed: int,
        stream: int = 0,
        progress: bool | None = None,
        *,
        start: int = 0,
    ) -> np.ndarray:
        """Vote counts (int64 [num_classes]) of samples start..start+n-1 of ``stream`` under
        ``seed`` (both 64-bit); ``progress``: a progress bar (None: for long runs).

        A pure function of (model, image, seed, stream, sample range): the same for every batch
        size and thread count, and counts of adjacent ranges add up to the count of their union.
        """

    def check_n(self, n: int, start: int = 0) -> int:
        """``n`` if one stream can draw samples start..start+n-1, else an IntSmoothError."""
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
            raise IntSmoothError(f"n must be a positive integer, got {n!r}")
        check_start(start)
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
        n0: int = DEFAULT_N0,
        n: int | None = None,
        alpha: float = 0.001,
        *,
        index: int = 0,
        seed: int,
        radii: Sequence[float] | None = None,
        n_max: int | None = None,
        progress: bool | None = None,
    ) -> Certificate | SequentialCertificate:
        """CERTIFY image ``x``: the class and a certified L2 radius, or abstain.

        ``n0`` samples from stream ``2 index`` choose the class; fresh samples from stream
        ``2 index + 1`` bound its probability, minus the sampler's TV bound. Without ``radii``
        this is Cohen et al.'s CERTIFY with ``n`` samples (default 100,000) and a Clopper-Pearson
        bound at ``alpha`` (:func:`tvm_intsmooth.certify.certify`): a :class:`Certificate`.
        With ``radii`` (increasing, e.g. ``[0.25, 0.5, 0.75]``) it is sequential certification
        (:func:`tvm_intsmooth.certify.certify_sequential`): samples are drawn up to the
        checkpoints 1,000, 1,500, 2,000, 2,500, 3,500, ... (at most ``n_max``, default 100,000)
        under an anytime-valid bound at ``alpha``, until the largest certifiable listed radius
        is decided: a :class:`SequentialCertificate` (``radius``: that listed radius; ``n``: the
        samples used). ``index`` is the image's dataset index (it keeps images' noise apart);
        ``seed`` (64-bit) makes the result replayable: record both.
        """
        if radii is None:
            if n_max is not None:
                raise IntSmoothError(
                    "n_max goes with radii (sequential certification at chosen radii); "
                    "fixed-n CERTIFY takes n"
                )
            n = DEFAULT_N if n is None else n
            selection = self.counts(x, n0, seed, selection_stream(index), progress)
            estimation = self.counts(x, n, seed, estimation_stream(index), progress)
            return certify(selection, estimation, self.sigma, alpha, self.tv_bound)
        if n is not None:
            raise IntSmoothError(
                f"n = {n} goes with fixed-n CERTIFY; with radii the procedure stops when the "
                "answer is known, within n_max samples: give n_max instead"
            )
        return self._certify_at_radii(
            x,
            n0,
            check_radii(radii),
            DEFAULT_N if n_max is None else n_max,
            alpha,
            index,
            seed,
            progress,
        )

    def _certify_at_radii(
        self,
        x: np.ndarray,
        n0: int,
        radii: tuple[float, ...],
        n_max: int,
        alpha: float,
        index: int,
        seed: int,
        progress: bool | None,
    ) -> SequentialCertificate:
        """Sequential certification: n0 selection samples, then estimation samples drawn range
        by range (``counts(..., start=offset)``) as :func:`certify_sequential` asks for them."""
        checkpoints(n_max)  # validates n_max before any sample is drawn
        self.check_n(n_max)
        stream = estimation_stream(index)
        selection = self.counts(x, n0, seed, selection_stream(index), progress)

        def draw(offset: int, size: int) -> np.ndarray:
            return self.counts(x, size, seed, stream, progress, start=offset)

        return certify_sequential(
            selection, draw, self.sigma, radii, alpha, self.tv_bound, n_max=n_max
        )

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
        n0: int = DEFAULT_N0,
        n: int | None = None,
        alpha: float = 0.001,
        *,
        seed: int,
        radii: Sequence[float] | None = None,
        n_max: int | None = None,
        progress: bool | None = None,
    ) -> Iterator[tuple[int, Certificate | SequentialCertificate, float]]:
        """:meth:`certify` of every job, in job order: ``(index, certificate, seconds)``
        (sequential at ``radii`` when they are given)."""
        for job in jobs:
            start = time.monotonic()
            cert = self.certify(
                job.image,
                n0,
                n,
                alpha,
                index=job.index,
                seed=seed,
                radii=radii,
                n_max=n_max,
                progress=progress,
            )
            yield job.index, cert, time.monotonic() - start
