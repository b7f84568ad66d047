"""SmoothedClassifier: vote counts of a compiled integer smoothed classifier; artifact folders.

:func:`save_artifact` compiles a SmoothedModel into an artifact folder (see
:mod:`.artifact`); :func:`load_artifact` (or ``SmoothedClassifier.load``) loads it on this
machine, and :func:`tvm_intsmooth.remote.load_artifact` on a TVM RPC session's device.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import tvm
from tqdm import tqdm
from tvm import relax

from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.pipeline.build import build, export, load
from tvm_intsmooth.runtime.artifact import (
    LIBRARY_FILE,
    ONNX_FILE,
    ArtifactMeta,
    check_artifact_destination,
    is_artifact,
    keep_other_files,
)
from tvm_intsmooth.runtime.base import BaseSmoothedClassifier, check_start, check_u64
from tvm_intsmooth.runtime.host_library import check_runs_here, export_host_library
from tvm_intsmooth.schedule.database import ScheduleLookup
from tvm_intsmooth.schedule.targets import resolve_target

MAX_SAMPLES = 2**32  # sample indices are one Philox counter word

# library path -> (a Relax VM with the library loaded, the device it runs on)
LibraryLoader = Callable[[Path], tuple[relax.VirtualMachine, tvm.runtime.Device]]


def check_sample_count(n: int, batch: int, start: int = 0) -> int:
    """``n`` if one stream of a library compiled for ``batch`` samples per call can draw
    samples start..start+n-1, else an IntSmoothError."""
    # Every batch's counter range must end at or below 2^32 (the sampler asserts it).
    max_n = MAX_SAMPLES - MAX_SAMPLES % batch
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or not 0 < n <= max_n:
        raise IntSmoothError(
            f"n must be an integer in [1, {max_n}] (sample indices of one stream stay below "
            f"2^32 in batches of {batch}), got {n!r}; split larger runs over streams"
        )
    start = check_start(start)
    if start + -(-n // batch) * batch > MAX_SAMPLES:
        raise IntSmoothError(
            f"samples {start}..{start + n - 1} of one stream: drawn in batches of {batch}, they "
            "reach past sample index 2^32 - 1; start earlier or split the run over streams"
        )
    return int(n)


def save_artifact(
    smoothed,
    path: str | os.PathLike,
    target="host",
    force: bool = False,
    schedules="auto",
    dump_ir: str | os.PathLike | None = None,
) -> Path:
    """Compile a SmoothedModel for ``target`` and write the artifact folder ``path``.

    An existing ``path`` is replaced only if it is an artifact written by this tool (files of
    others in it are kept), or with ``force``. The new artifact is complete before it replaces
    the old one; a failure leaves the old one in place. ``schedules``: the tuned schedule
    database to apply (see :func:`tvm_intsmooth.pipeline.build`; default: the shipped one
    matching the model, if any); which one was used, and the model's workload key, go into
    meta.json under ``"schedules"``. ``dump_ir``: folder to write the IR after each build phase
    to. :func:`load_artifact` loads the artifact.
    """
    path = check_artifact_destination(path, force)
    spec = resolve_target(target)
    tmp = Path(tempfile.mkdtemp(prefix=path.name + ".partial-", dir=path.parent))
    try:
        lookup = ScheduleLookup(spec, schedules)
        executable = build(
            smoothed.mod, spec, require_integer_only=True, schedules=lookup, dump_ir=dump_ir
        )
        library = export(executable, tmp / LIBRARY_FILE, spec)
        host_library = export_host_library(smoothed.mod, spec, tmp)
        float_model = None
        if smoothed.onnx_model is not None:
            onnx.save(smoothed.onnx_model, float_model := tmp / ONNX_FILE)
        ArtifactMeta.for_library(
            smoothed.metadata(),
            spec,
            library,
            lookup.summary(),
            onnx_file=float_model,
            host_library=host_library,
        ).write(tmp)
        old, ours = None, is_artifact(path)
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=path.name + ".old-", dir=path.parent))
            path.replace(old / "artifact")
        tmp.replace(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        if ours:
            keep_other_files(old / "artifact", path)
        shutil.rmtree(old, ignore_errors=True)
    return path


def load_artifact(path: str | os.PathLike, threads: int | None = None) -> SmoothedClassifier:
    """The SmoothedClassifier of an artifact folder written by :func:`save_artifact`, on this
    machine (the same as ``SmoothedClassifier.load``); ``threads``: see
    :class:`SmoothedClassifier`."""
    return SmoothedClassifier.load(path, threads=threads)


def _check_threads(threads) -> int | None:
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int | np.integer) or threads < 1:
        raise IntSmoothError(f"threads must be a positive integer, got {threads!r}")
    return int(threads)


def _load_here(library: Path) -> tuple[relax.VirtualMachine, tvm.runtime.Device]:
    return load(library), tvm.cpu()  # an IntSmoothError when built for another machine


class SmoothedClassifier(BaseSmoothedClassifier):
    """A compiled integer smoothed classifier: vote counts, CERTIFY and PREDICT.

    ``counts(x, n, seed, stream)`` counts the votes of n noisy samples of one stream;
    ``certify(x, n0, n, alpha, index=, seed=)`` and ``predict(x, n, alpha, index=, seed=)`` run
    Cohen et al.'s procedures on the streams of the image's dataset index (see
    :mod:`tvm_intsmooth.runtime.cohen_procedures`).

    Args:
        vm: a Relax VM with the smoothed library loaded.
        meta: the model's smoothing metadata (``SmoothedModel.metadata()``, or an artifact's
            meta.json).
        device: where ``vm`` runs (this machine's CPU by default; the remote device for a VM
            of an RPC session).
        threads: threads of this machine's kernels (default: one per physical core the process
            may run on, see :func:`tvm_intsmooth.compat.use_all_cores`; at most that many).
            The counts are the same for every thread count. ``clf.threads`` is the count in
            effect (None for a remote device).
    """

    def __init__(
        self,
        vm: relax.VirtualMachine,
        meta: dict,
        device: tvm.runtime.Device | None = None,
        threads: int | None = None,
    ):
        self.vm = vm
        self.device = tvm.cpu() if device is None else device
        self._threads = _check_threads(threads)
        self.meta = meta
        self.input_shape = tuple(meta["input_shape"])
        self.num_classes = int(meta["num_classes"])
        self.batch = int(meta["batch"])
        self.sigma = float(meta["sigma"])
        self.tv_bound = float(meta["tv_bound"])

    @classmethod
    def load(cls, path: str | os.PathLike, threads: int | None = None) -> SmoothedClassifier:
        """Load an artifact folder written by :func:`save_artifact` on this machine.

        The library's SHA-256 must be meta.json's, and the sigma, noise table, batch, shapes and
        clip policy compiled into it must be meta.json's; the TV bound is recomputed from them.
        An artifact whose target this machine cannot run is refused before it runs.
        """
        check_runs_here(path, ArtifactMeta.from_file(path))
        return cls.load_with(path, _load_here, threads=threads)

    @classmethod
    def load_with(
        cls, path: str | os.PathLike, load_library: LibraryLoader, threads: int | None = None
    ) -> SmoothedClassifier:
        """:meth:`load` with the library loaded by ``load_library`` (library path -> (VM,
        device)), e.g. uploaded to a remote device; the same checks."""
        meta = ArtifactMeta.from_file(path)
        vm, device = load_library(meta.check_library(path))
        clf = cls(vm, meta.to_dict(), device, threads=threads)
        clf.tv_bound = meta.check_facts(vm, path)
        return clf

    @classmethod
    def from_model(cls, smoothed, target="host", threads: int | None = None) -> SmoothedClassifier:
        """Compile a SmoothedModel in memory (no artifact folder)."""
        ex = build(smoothed.mod, target)
        return cls(relax.VirtualMachine(ex, tvm.cpu()), smoothed.metadata(), threads=threads)

    @property
    def is_local(self) -> bool:
        """Whether the library runs in this process (not over TVM RPC)."""
        # an RPC session's devices have the session in the upper bits of their type
        return self.device.dlpack_device_type() == tvm.cpu().dlpack_device_type()

    @property
    def threads(self) -> int | None:
        """The thread count of this machine's kernels when :meth:`counts` runs (None for a
        remote device)."""
        return self._use_threads() if self.is_local else None

    def _use_threads(self) -> int:
        """Size this thread's TVM pool as asked (each calling thread has its own pool)."""
        from tvm_intsmooth.compat import set_num_threads

        if self._threads is None:
            return int(tvm.runtime.num_threads())
        return set_num_threads(self._threads)

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

    def check_n(self, n: int, start: int = 0) -> int:
        """``n`` if one stream can draw samples start..start+n-1, else an IntSmoothError."""
        return check_sample_count(n, self.batch, start)

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
        """Vote counts (int64 [K]) of samples start..start+n-1 of ``stream`` under ``seed``.

        Sample i's noise is keyed by (seed, stream, i) and batches use disjoint counter ranges,
        so the counts depend only on (model, x, seed, stream, sample range), not on the batch
        size or the thread count; memory does not grow with n.
        """
        pixels = self.tensor(self.check_image(x))
        self.check_n(n, start)
        seed, stream = check_u64(seed, "seed"), check_u64(stream, "stream")
        start, end = int(start), int(start) + int(n)
        if self.is_local:
            self._use_threads()
        total = np.zeros(self.num_classes, np.int64)
        show = n >= 20 * self.batch if progress is None else progress
        # The arguments of every batch but its counter are made once (per-call overhead).
        main = self.vm["main"]
        _, seed_t, counter_t, full_t = self.batch_inputs(pixels, seed, stream, start, self.batch)
        counter = counter_t.numpy()
        with tqdm(total=n, disable=not show, unit="sample", leave=False) as bar:
            for offset in range(start, end, self.batch):
                valid = min(self.batch, end - offset)
                counter[2] = offset
                counter_t.copyfrom(counter)
                valid_t = full_t if valid == self.batch else self.tensor(np.array([valid]))
                total += main(pixels, seed_t, counter_t, valid_t).numpy()
                bar.update(valid)
        return total
