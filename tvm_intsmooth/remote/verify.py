"""Vote counts from remote devices, checked on the host (``--verify FRACTION``).

A TVM RPC server runs whatever a client sends and returns whatever it likes: nothing proves that
the votes it returns are those of the uploaded library. But vote counts are a pure function of
(module, image, seed, stream, sample range), the same to the bit on every target, so the host
can recompute any batch itself with a build of the same module
(:mod:`tvm_intsmooth.runtime.host_library`). :class:`VerifiedCounts` wraps the classifier of a
remote session: every batch that comes back must be K non-negative votes that sum to the batch's
sample count, and once it has come back the host draws, from the operating system's randomness,
whether to recompute it (probability ``fraction``). Any difference is a :class:`ForgedCounts`
naming the server: the image is refused. A forgery that changes m batches escapes with
probability (1 - fraction)^m (docs/soundness.md, section 9).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import tvm

from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.pipeline.build import load
from tvm_intsmooth.runtime.artifact import ArtifactMeta
from tvm_intsmooth.runtime.base import BaseSmoothedClassifier, check_u64
from tvm_intsmooth.runtime.host_library import verification_library
from tvm_intsmooth.runtime.smoothed_classifier import SmoothedClassifier

DEFAULT_VERIFY = 0.05


class ForgedCounts(IntSmoothError):
    """A remote device returned vote counts that are impossible, or that differ from the host's
    recomputation of the same batch."""


def check_fraction(value: float) -> float:
    """``value`` if it is a share of batches in [0, 1], else an IntSmoothError."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise IntSmoothError(f"--verify must be a fraction in [0, 1], got {value!r}")
    return float(value)


def load_verifier(artifact: str | Path) -> SmoothedClassifier:
    """The artifact's classifier on this machine for recomputing remote batches: model.so, or
    model.host.so where this machine cannot run model.so; hash and facts checked."""
    meta = ArtifactMeta.from_file(artifact)
    vm = load(verification_library(artifact, meta))
    clf = SmoothedClassifier(vm, meta.to_dict(), tvm.cpu())
    clf.tv_bound = meta.check_facts(vm, artifact)
    return clf


class VerifiedCounts(BaseSmoothedClassifier):
    """The counts of ``remote`` (a SmoothedClassifier on an RPC session), each batch checked:
    its votes for shape and sum, and with probability ``fraction`` recomputed by ``host``.

    Args:
        remote: the classifier whose VM runs on the remote device.
        host: the same artifact on this machine (:func:`load_verifier`); None with fraction 0.
        fraction: the share of batches recomputed here (0: none; 1: all).
        server: how errors name the remote device (its address and name).
    """

    def __init__(
        self,
        remote: SmoothedClassifier,
        host: SmoothedClassifier | None,
        fraction: float,
        server: str,
    ):
        self.remote, self.host = remote, host
        self.fraction = check_fraction(fraction)
        if self.fraction > 0 and host is None:
            raise IntSmoothError("checking remote counts needs the host's classifier")
        self.server = server
        self.input_shape, self.num_classes = remote.input_shape, remote.num_classes
        self.batch, self.sigma, self.tv_bound = remote.batch, remote.sigma, remote.tv_bound
        self.batches = 0  # batches received
        self.recomputed = 0  # of them, recomputed here
        self._coin = random.SystemRandom()

    def check_n(self, n: int, start: int = 0) -> int:
        """``n`` if one stream can draw samples start..start+n-1, else an IntSmoothError."""
        return self.remote.check_n(n, start) if start else self.remote.check_n(n)

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
        """Vote counts (int64 [K]) of samples start..start+n-1 of ``stream``, computed on the
        remote device batch by batch; a :class:`ForgedCounts` when a batch fails its checks."""
        image = self.check_image(x)
        self.check_n(n, start)
        seed, stream = check_u64(seed, "seed"), check_u64(stream, "stream")
        pixels = self.remote.tensor(image)
        host_pixels = None
        total = np.zeros(self.num_classes, np.int64)
        end = int(start) + int(n)
        for offset in range(int(start), end, self.batch):
            valid = min(self.batch, end - offset)
            inputs = self.remote.batch_inputs(pixels, seed, stream, offset, valid)
            votes = np.asarray(self.remote.vm["main"](*inputs).numpy())
            where = f"samples {offset}..{offset + valid - 1} of stream {stream} (seed {seed})"
            self._check_votes(votes, valid, where)
            self.batches += 1
            if self.fraction and self._coin.random() < self.fraction:  # drawn after it came
                if host_pixels is None:
                    host_pixels = self.host.tensor(image)
                args = self.host.batch_inputs(host_pixels, seed, stream, offset, valid)
                here = self.host.vm["main"](*args).numpy()
                self.recomputed += 1
                if not np.array_equal(votes, here):
                    raise self._forged(
                        f"returned the votes {votes.tolist()} for {where}, where this machine "
                        f"computes {here.tolist()}"
                    )
            total += votes
        return total

    def _check_votes(self, votes: np.ndarray, valid: int, where: str) -> None:
        if votes.shape != (self.num_classes,) or votes.dtype.kind not in "iu":
            raise self._forged(
                f"returned {votes.dtype} votes of shape {votes.shape} for {where}, not "
                f"{self.num_classes} integer counts"
            )
        if votes.min() < 0 or int(votes.sum()) != valid:
            raise self._forged(
                f"returned the votes {votes.tolist()} for {where}: {valid} samples cast "
                f"exactly {valid} non-negative votes"
            )

    def _forged(self, what: str) -> ForgedCounts:
        return ForgedCounts(
            f"{self.server} {what}. Vote counts are the same to the bit on every device, so "
            "the server (or the network to it) is not to be trusted: its counts are refused. "
            "Take it out of service and check it"
        )
