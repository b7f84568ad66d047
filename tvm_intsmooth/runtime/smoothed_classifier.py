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
import tempfile
from pathlib import Path

import numpy as np
import onnx
import tvm
from tqdm import tqdm
from tvm import relax

from ..errors import DataError, IntSmoothError
from ..schedule import build, export, load, resolve_target
from ..schedule.database import ScheduleLookup
from .cohen_procedures import CohenProcedures

MAX_SAMPLES = 2**32  # sample indices are one Philox counter word
MAX_U64 = 2**64


def _check_u64(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise IntSmoothError(f"{name} must be an integer, got {value!r}")
    if not 0 <= int(value) < MAX_U64:
        raise IntSmoothError(f"{name} must be in [0, 2^64), got {value}")
    return int(value)


ARTIFACT_FORMAT = "tvm_intsmooth.artifact/1"
# meta.json keys that loading needs, with their types (the rest is informational).
REQUIRED_META = {
    "sigma": (int, float),
    "noise": str,
    "bits": int,
    "K": int,
    "tv_bound": (int, float),
    "batch": int,
    "input_shape": list,
    "num_classes": int,
    "target": str,
    "library_sha256": str,
}


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_artifact_meta(path: str | os.PathLike) -> dict:
    """The meta.json of an artifact folder, with every key loading needs, or an IntSmoothError."""
    path = Path(path)
    if not (path / "meta.json").is_file():
        raise IntSmoothError(
            f"artifact {path}: not found (expected a folder with meta.json "
            "and model.so, as written by `intsmooth compile`)"
        )
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise IntSmoothError(
            f"artifact {path}: meta.json is unreadable ({err}); write the artifact again with "
            "`intsmooth compile`"
        ) from None
    if not isinstance(meta, dict):
        raise IntSmoothError(f"artifact {path}: meta.json is not a JSON object; compile again")
    bad = [
        key
        for key, kind in REQUIRED_META.items()
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool)
    ]
    if bad:
        raise IntSmoothError(
            f"artifact {path}: meta.json lacks or mangles {', '.join(bad)}; it is incomplete or "
            "edited, so nothing it says can be trusted: write the artifact again with "
            "`intsmooth compile`"
        )
    return meta


def is_artifact(path: Path) -> bool:
    """Whether ``path`` is a folder that this tool wrote (its meta.json says so)."""
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(meta, dict) and (
        meta.get("format") == ARTIFACT_FORMAT or {"library_sha256", "sigma", "K"} <= meta.keys()
    )


def check_artifact_destination(path: str | os.PathLike, force: bool = False) -> Path:
    """Refuse to replace anything but an artifact of ours at ``path`` (unless ``force``)."""
    path = Path(path)
    if path.exists() and not force and not (path.is_dir() and is_artifact(path)):
        kind = "folder" if path.is_dir() else "file"
        raise IntSmoothError(
            f"{path} exists and is not an artifact written by intsmooth (a {kind} without our "
            "meta.json); it would be replaced. Choose another -o, or pass --force to replace it"
        )
    if not path.parent.is_dir():
        raise IntSmoothError(f"{path}: the folder {path.parent} does not exist; create it first")
    return path


def save_artifact(
    smoothed, path: str | os.PathLike, target="host", force: bool = False, schedules="auto"
) -> Path:
    """Compile a SmoothedModel for ``target`` and write the artifact folder ``path``.

    An existing ``path`` is replaced only if it is an artifact written by this tool, or with
    ``force``. The new artifact is complete before it replaces the old one; a failure leaves
    the old one in place. ``schedules``: the tuned schedule database to apply (see
    :func:`tvm_intsmooth.schedule.build`; default: the shipped one matching the model, if any);
    which one was used, and the model's workload key, go into meta.json under ``"schedules"``.
    """
    path = check_artifact_destination(path, force)
    spec = resolve_target(target)
    tmp = Path(tempfile.mkdtemp(prefix=path.name + ".partial-", dir=path.parent))
    try:
        lookup = ScheduleLookup(spec, schedules)
        executable = build(smoothed.mod, spec, require_integer_only=True, schedules=lookup)
        export(executable, tmp / "model.so", spec)
        if smoothed.onnx_model is not None:
            onnx.save(smoothed.onnx_model, tmp / "model.onnx")
        meta = {
            "format": ARTIFACT_FORMAT,
            **smoothed.metadata(),
            "target": spec.name,
            "resolved_target": spec.resolved_name,  # for "host": the bundled target it became
            "target_config": str(spec.target),
            "library_sha256": file_sha256(tmp / "model.so"),
            "schedules": lookup.summary(),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=path.name + ".old-", dir=path.parent))
            path.replace(old / "artifact")
        tmp.replace(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return path


def verify_library(path: Path, meta: dict, vm: relax.VirtualMachine) -> float:
    """Check the facts compiled into the library against meta.json; return the TV bound
    recomputed from them (docs/soundness.md, section 3). Any mismatch is an IntSmoothError."""
    from ..smoothing.artifact_facts import FACTS_FUNCTION, ArtifactFacts, table_digest
    from ..smoothing.noise_table import rounded_gaussian_table

    try:
        facts = ArtifactFacts.from_array(vm[FACTS_FUNCTION]().numpy())
    except (AttributeError, RuntimeError, KeyError) as err:
        raise IntSmoothError(
            f"artifact {path}: model.so has no {FACTS_FUNCTION} ({type(err).__name__}), so its "
            "sigma and noise table cannot be checked; compile it again with this version"
        ) from None
    claimed = {
        "sigma": float(meta["sigma"]),
        "bits": meta["bits"],
        "K": meta["K"],
        "batch": meta["batch"],
        "clip": meta.get("clip", "none"),
        "num_classes": meta["num_classes"],
        "input_shape": tuple(meta["input_shape"]),
    }
    differ = [
        f"{k} {v!r} (library: {getattr(facts, k)!r})"
        for k, v in claimed.items()
        if getattr(facts, k) != v
    ]
    if differ:
        raise IntSmoothError(
            f"artifact {path}: meta.json does not describe its model.so: {'; '.join(differ)}. "
            "The library and meta.json come from different compiles (or meta.json was edited); "
            "a certificate from them would be wrong. Compile the artifact again"
        )
    table = rounded_gaussian_table(facts.sigma, bits=facts.bits)
    if table.K != facts.K or table_digest(table) != facts.table_digest:
        raise IntSmoothError(
            f"artifact {path}: the noise table compiled into model.so is not the one sigma "
            f"{facts.sigma} and {facts.bits} bits give here; compile the artifact again"
        )
    tv_bound = table.tv_bound(int(np.prod(facts.input_shape)))
    if float(meta["tv_bound"]) != tv_bound:
        raise IntSmoothError(
            f"artifact {path}: meta.json's TV bound {meta['tv_bound']!r} is not the {tv_bound!r} "
            "its noise table gives; meta.json was edited. Compile the artifact again"
        )
    return tv_bound


class SmoothedClassifier(CohenProcedures):
    """A compiled integer smoothed classifier: vote counts, CERTIFY and PREDICT.

    ``counts(x, n, seed, stream)`` counts the votes of n noisy samples of one stream;
    ``certify(x, n0, n, alpha, index=, seed=)`` and ``predict(x, n, alpha, index=, seed=)`` run
    Cohen et al.'s procedures on the streams of the image's dataset index (see
    :mod:`tvm_intsmooth.runtime.cohen_procedures`).
    """

    def __init__(
        self, vm: relax.VirtualMachine, meta: dict, device: tvm.runtime.Device | None = None
    ):
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
        TVM ``RPCSession``, on that session's device (its library is uploaded there).

        The library's SHA-256 must be meta.json's, and the sigma, noise table, batch, shapes and
        clip policy compiled into it must be meta.json's; the TV bound is recomputed from them.
        """
        path = Path(path)
        meta = read_artifact_meta(path)
        library = path / "model.so"
        if not library.is_file():
            raise IntSmoothError(f"artifact {path}: model.so is missing; compile it again")
        actual = file_sha256(library)
        if actual != meta["library_sha256"]:
            raise IntSmoothError(
                f"artifact {path}: model.so has SHA-256 {actual[:16]}..., but meta.json names "
                f"{meta['library_sha256'][:16]}...: the library was replaced or damaged after "
                "compiling. Compile the artifact again"
            )
        if session is None:
            vm, device = load(library), None  # an IntSmoothError when built for another machine
        else:
            from ..remote.session import load_remote_vm

            vm, device = load_remote_vm(session, library)
        clf = cls(vm, meta, device)
        clf.tv_bound = verify_library(path, meta, vm)
        return clf

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

    def check_n(self, n: int) -> int:
        """``n`` if one stream can draw that many samples, else an IntSmoothError."""
        # Every batch's counter range must end at or below 2^32 (the sampler asserts it).
        max_n = MAX_SAMPLES - MAX_SAMPLES % self.batch
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or not 0 < n <= max_n:
            raise IntSmoothError(
                f"n must be an integer in [1, {max_n}] (sample indices of one stream stay below "
                f"2^32 in batches of {self.batch}), got {n!r}; split larger runs over streams"
            )
        return int(n)

    def counts(
        self, x: np.ndarray, n: int, seed: int, stream: int = 0, progress: bool | None = None
    ) -> np.ndarray:
        """Vote counts (int64 [K]) of samples 0..n-1 of ``stream`` under ``seed``.

        Batches use disjoint counter ranges, so the counts depend only on (model, x, n, seed,
        stream), not on the batch size or the thread count; memory does not grow with n.
        """
        pixels = self.tensor(self.check_image(x))
        self.check_n(n)
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
