"""SmoothedClassifier: vote counts of a compiled integer smoothed classifier, on the host.

An artifact is a folder: ``model.so`` (the compiled library for its target), ``meta.json``
(sigma, noise, TV bound, batch, shapes, target, ...) and ``model.onnx`` (the float model, for
the floating-point reference smoothing).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import tvm
from tqdm import tqdm
from tvm import relax

from ..errors import DataError, IntSmoothError
from ..schedule import build, export, load, resolve_target
from .cohen_procedures import CohenProcedures

MAX_SAMPLES = 2**32  # sample indices are one Philox counter word
MAX_U64 = 2**64


def _check_u64(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise IntSmoothError(f"{name} must be an integer, got {value!r}")
    if not 0 <= int(value) < MAX_U64:
        raise IntSmoothError(f"{name} must be in [0, 2^64), got {value}")
    return int(value)


def save_artifact(smoothed, path: str | os.PathLike, target="host") -> Path:
    """Compile a SmoothedModel for ``target`` and write the artifact folder ``path``."""
    path = Path(path)
    spec = resolve_target(target)
    tmp = path.with_name(path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    export(build(smoothed.mod, spec, require_integer_only=True), tmp / "model.so", spec)
    if smoothed.onnx_model is not None:
        onnx.save(smoothed.onnx_model, tmp / "model.onnx")
    meta = {**smoothed.metadata(), "target": spec.name, "target_config": str(spec.target)}
    meta["library_sha256"] = hashlib.sha256((tmp / "model.so").read_bytes()).hexdigest()
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    shutil.rmtree(path, ignore_errors=True)
    tmp.replace(path)
    return path


class SmoothedClassifier(CohenProcedures):
    """A compiled integer smoothed classifier: vote counts, CERTIFY and PREDICT.

    ``counts(x, n, seed, stream)`` counts the votes of n noisy samples of one stream;
    ``certify(x, n0, n, alpha, index=, seed=)`` and ``predict(x, n, alpha, index=, seed=)`` run
    Cohen et al.'s procedures on the streams of the image's dataset index (see
    :mod:`tvm_intsmooth.runtime.cohen_procedures`).
    """

    def __init__(self, vm: relax.VirtualMachine, meta: dict, device=None):
        self.vm = vm
        self.device = tvm.cpu() if device is None else device  # remote for an RPC session's VM
        self.meta = meta
        self.input_shape = tuple(meta["input_shape"])
        self.num_classes = int(meta["num_classes"])
        self.batch = int(meta["batch"])
        self.sigma = float(meta["sigma"])
        self.tv_bound = float(meta["tv_bound"])

    @classmethod
    def load(cls, path: str | os.PathLike, session=None) -> SmoothedClassifier:
        """Load an artifact folder written by :func:`save_artifact`, on this machine or, with a
        TVM ``RPCSession``, on that session's device (its library is uploaded there)."""
        path = Path(path)
        if not (path / "meta.json").is_file():
            raise IntSmoothError(
                f"artifact {path}: not found (expected a folder with meta.json "
                "and model.so, as written by `intsmooth compile`)"
            )
        try:
            meta = json.loads((path / "meta.json").read_text())
            if session is None:
                return cls(load(path / "model.so"), meta)
            from ..remote.session import load_remote_vm

            vm, device = load_remote_vm(session, path / "model.so")
            return cls(vm, meta, device)
        except (ValueError, KeyError, TypeError) as err:
            raise IntSmoothError(
                f"artifact {path}: meta.json is unreadable or incomplete ({err!r}); write the "
                "artifact again with save_artifact or `intsmooth compile`"
            ) from None

    @classmethod
    def from_model(cls, smoothed, target="host") -> SmoothedClassifier:
        """Compile a SmoothedModel in memory (no artifact folder)."""
        ex = build(smoothed.mod, target)
        return cls(relax.VirtualMachine(ex, tvm.cpu()), smoothed.metadata())

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

    def tensor(self, array: np.ndarray) -> tvm.runtime.Tensor:
        """``array`` copied to the classifier's device (this machine's CPU or the RPC device)."""
        return tvm.runtime.tensor(array, device=self.device)

    def batch_inputs(self, pixels, seed: int, stream: int, offset: int, valid: int) -> tuple:
        """The arguments of ``main`` for samples offset..offset+valid-1 of ``stream``: the
        pixels (a tensor from :meth:`tensor`), the seed, the Philox counter and the count."""
        counter = np.array([stream & 0xFFFFFFFF, stream >> 32, offset], np.int64)
        return (
            pixels,
            self.tensor(np.array([seed & 0xFFFFFFFF, seed >> 32], np.int64)),
            self.tensor(counter),
            self.tensor(np.array([valid], np.int64)),
        )

    def counts(
        self, x: np.ndarray, n: int, seed: int, stream: int = 0, progress: bool | None = None
    ) -> np.ndarray:
        """Vote counts (int64 [K]) of samples 0..n-1 of ``stream`` under ``seed``.

        Batches use disjoint counter ranges, so the counts depend only on (model, x, n, seed,
        stream), not on the batch size or the thread count; memory does not grow with n.
        """
        pixels = self.tensor(self.check_image(x))
        # Every batch's counter range must end at or below 2^32 (the sampler asserts it).
        max_n = MAX_SAMPLES - MAX_SAMPLES % self.batch
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or not 0 < n <= max_n:
            raise IntSmoothError(
                f"n must be an integer in [1, {max_n}] (sample indices of one stream stay below "
                f"2^32 in batches of {self.batch}), got {n!r}; split larger runs over streams"
            )
        seed, stream = _check_u64(seed, "seed"), _check_u64(stream, "stream")
        total = np.zeros(self.num_classes, np.int64)
        show = n >= 20 * self.batch if progress is None else progress
        with tqdm(total=n, disable=not show, unit="sample", leave=False) as bar:
            for offset in range(0, n, self.batch):
                valid = min(self.batch, n - offset)
                votes = self.vm["main"](*self.batch_inputs(pixels, seed, stream, offset, valid))
                total += votes.numpy()
                bar.update(valid)
        return total
