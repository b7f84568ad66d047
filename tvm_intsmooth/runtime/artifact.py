"""The artifact folder and its meta.json, written and read here only (:class:`ArtifactMeta`).

An artifact is a folder: ``model.so`` (the compiled library for its target), ``meta.json``
(sigma, noise, TV bound, batch, shapes, target, the SHA-256 of every file, ...), ``model.onnx``
(the float model, for the floating-point reference smoothing) and, where this machine cannot run
``model.so`` (an ARM target), ``model.host.so``: the same module built for a portable target of
this machine, with which the host checks vote counts computed on remote devices
(docs/soundness.md, section 9). Nothing in meta.json is trusted: each file's SHA-256 is checked
from the bytes that are used (:meth:`ArtifactMeta.check_library`, :meth:`~ArtifactMeta.read_onnx`,
:meth:`~ArtifactMeta.check_host_library`), and the facts compiled into a library are compared
with it (:meth:`ArtifactMeta.check_facts`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.smoothing.artifact_facts import FACTS_FUNCTION, ArtifactFacts, table_digest
from tvm_intsmooth.smoothing.noise_table import rounded_gaussian_table

ARTIFACT_FORMAT = "tvm_intsmooth.artifact/1"
META_FILE = "meta.json"
LIBRARY_FILE = "model.so"
ONNX_FILE = "model.onnx"
HOST_LIBRARY_FILE = "model.host.so"
# The files an artifact folder of ours holds; `intsmooth compile -o` keeps any other file.
ARTIFACT_FILES = (META_FILE, LIBRARY_FILE, ONNX_FILE, HOST_LIBRARY_FILE)

# meta.json keys that loading needs, with their JSON types (the rest is informational).
REQUIRED_KEYS = {
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
    "clip": str,
}


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _checked_bytes(folder, name: str, expected: str | None, what: str) -> bytes:
    """The bytes of ``folder``/``name`` if their SHA-256 is ``expected``, else an IntSmoothError
    (missing, replaced or damaged file; or a meta.json that records no hash for it)."""
    path = Path(folder) / name
    if not path.is_file():
        raise IntSmoothError(f"artifact {folder}: {name} is missing; compile it again")
    if expected is None:
        raise IntSmoothError(
            f"artifact {folder}: meta.json records no SHA-256 for {name} ({what}), so it cannot "
            "be checked (an artifact of an older version). Compile the artifact again"
        )
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise IntSmoothError(
            f"artifact {folder}: {name} has SHA-256 {actual[:16]}..., but meta.json names "
            f"{expected[:16]}...: {what} was replaced or damaged after compiling. Compile the "
            "artifact again"
        )
    return data


@dataclass(frozen=True)
class ArtifactMeta:
    """meta.json: what the library computes (sigma, noise, shapes, batch), where it runs, and
    the SHA-256 that ties it to its ``model.so``."""

    sigma: float
    noise: str
    bits: int
    K: int
    tv_bound: float
    batch: int
    clip: str
    input_shape: tuple[int, ...]
    num_classes: int
    target: str
    library_sha256: str
    source: str | None = None
    resolved_target: str | None = None  # for "host": the bundled target it became
    target_config: str | None = None
    schedules: dict | None = None  # the tuned database applied, and the model's workload key
    onnx_sha256: str | None = None  # model.onnx, the float reference
    host_target: str | None = None  # model.host.so: the same module for a portable host target
    host_library_sha256: str | None = None
    format: str = ARTIFACT_FORMAT

    @classmethod
    def for_library(
        cls,
        smoothing: dict,
        target,
        library: str | os.PathLike,
        schedules: dict,
        *,
        onnx_file: str | os.PathLike | None = None,
        host_library: tuple[str, str | os.PathLike] | None = None,
    ) -> ArtifactMeta:
        """The meta of ``library``, compiled for ``target`` (a resolved
        :class:`~tvm_intsmooth.schedule.targets.TargetSpec`) from a model with ``smoothing``
        metadata (``SmoothedModel.metadata()``); ``onnx_file``: the float model beside it;
        ``host_library``: (target name, path) of the host build beside it."""
        return cls(
            sigma=float(smoothing["sigma"]),
            noise=smoothing["noise"],
            bits=int(smoothing["bits"]),
            K=int(smoothing["K"]),
            tv_bound=float(smoothing["tv_bound"]),
            batch=int(smoothing["batch"]),
            clip=smoothing["clip"],
            input_shape=tuple(smoothing["input_shape"]),
            num_classes=int(smoothing["num_classes"]),
            source=smoothing.get("source"),
            target=target.name,
            resolved_target=target.resolved_name,
            target_config=str(target.target),
            library_sha256=file_sha256(library),
            schedules=schedules,
            onnx_sha256=None if onnx_file is None else file_sha256(onnx_file),
            host_target=None if host_library is None else host_library[0],
            host_library_sha256=None if host_library is None else file_sha256(host_library[1]),
        )

    @classmethod
    def from_file(cls, folder: str | os.PathLike) -> ArtifactMeta:
        """The meta.json of an artifact folder, with every key loading needs, or an
        IntSmoothError that says what is wrong."""
        folder = Path(folder)
        meta = _read_json(folder)
        if meta is None:
            raise IntSmoothError(
                f"artifact {folder}: not found (expected a folder with meta.json "
                "and model.so, as written by `intsmooth compile`)"
            )
        if isinstance(meta, Exception):
            raise IntSmoothError(
                f"artifact {folder}: meta.json is unreadable ({meta}); write the artifact again "
                "with `intsmooth compile`"
            )
        if not isinstance(meta, dict):
            raise IntSmoothError(
                f"artifact {folder}: meta.json is not a JSON object; compile again"
            )
        bad = [
            key
            for key, kind in REQUIRED_KEYS.items()
            if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool)
        ]
        if bad:
            raise IntSmoothError(
                f"artifact {folder}: meta.json lacks or mangles {', '.join(bad)}; it is incomplete "
                "or edited, so nothing it says can be trusted: write the artifact again with "
                "`intsmooth compile`"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in meta.items() if key in known}
        values.update(
            sigma=float(meta["sigma"]),
            tv_bound=float(meta["tv_bound"]),
            input_shape=tuple(meta["input_shape"]),
        )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """meta.json's content (optional keys that are None left out)."""
        out = {"format": self.format}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name != "format" and value is not None:
                out[field.name] = list(value) if field.name == "input_shape" else value
        return out

    def write(self, folder: str | os.PathLike) -> Path:
        """Write ``folder``/meta.json."""
        path = Path(folder) / META_FILE
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    def check_library(self, folder: str | os.PathLike) -> Path:
        """The path of the artifact's model.so if its SHA-256 is this meta's, else an
        IntSmoothError (the library is missing, replaced or damaged)."""
        library = Path(folder) / LIBRARY_FILE
        if not library.is_file():
            raise IntSmoothError(f"artifact {folder}: model.so is missing; compile it again")
        actual = file_sha256(library)
        if actual != self.library_sha256:
            raise IntSmoothError(
                f"artifact {folder}: model.so has SHA-256 {actual[:16]}..., but meta.json names "
                f"{self.library_sha256[:16]}...: the library was replaced or damaged after "
                "compiling. Compile the artifact again"
            )
        return library

    def read_onnx(self, folder: str | os.PathLike) -> bytes:
        """The bytes of the artifact's model.onnx (the float reference) if their SHA-256 is
        this meta's, else an IntSmoothError."""
        return _checked_bytes(folder, ONNX_FILE, self.onnx_sha256, "the float reference")

    def check_host_library(self, folder: str | os.PathLike) -> Path:
        """The path of the artifact's model.host.so if its SHA-256 is this meta's, else an
        IntSmoothError."""
        _checked_bytes(folder, HOST_LIBRARY_FILE, self.host_library_sha256, "the host library")
        return Path(folder) / HOST_LIBRARY_FILE

    def check_facts(self, vm, folder: str | os.PathLike) -> float:
        """Check the facts compiled into the library (loaded in the Relax VM ``vm``) against
        this meta; return the TV bound recomputed from them (docs/soundness.md, section 3).
        Any mismatch is an IntSmoothError."""
        try:
            facts = ArtifactFacts.from_array(vm[FACTS_FUNCTION]().numpy())
        except (AttributeError, RuntimeError, KeyError) as err:
            raise IntSmoothError(
                f"artifact {folder}: model.so has no {FACTS_FUNCTION} ({type(err).__name__}), so "
                "its sigma and noise table cannot be checked; compile it again with this version"
            ) from None
        differ = [
            f"{key} {getattr(self, key)!r} (library: {getattr(facts, key)!r})"
            for key in ("sigma", "bits", "K", "batch", "clip", "num_classes", "input_shape")
            if getattr(facts, key) != getattr(self, key)
        ]
        if differ:
            raise IntSmoothError(
                f"artifact {folder}: meta.json does not describe its model.so: "
                f"{'; '.join(differ)}. The library and meta.json come from different compiles "
                "(or meta.json was edited); a certificate from them would be wrong. Compile the "
                "artifact again"
            )
        table = rounded_gaussian_table(facts.sigma, bits=facts.bits)
        if table.K != facts.K or table_digest(table) != facts.table_digest:
            raise IntSmoothError(
                f"artifact {folder}: the noise table compiled into model.so is not the one sigma "
                f"{facts.sigma} and {facts.bits} bits give here; compile the artifact again"
            )
        tv_bound = table.tv_bound(int(np.prod(facts.input_shape)))
        if self.tv_bound != tv_bound:
            raise IntSmoothError(
                f"artifact {folder}: meta.json's TV bound {self.tv_bound!r} is not the "
                f"{tv_bound!r} its noise table gives; meta.json was edited. Compile the artifact "
                "again"
            )
        return tv_bound


def _read_json(folder: Path):
    """meta.json's content, None when it does not exist, the exception when unreadable."""
    if not (folder / META_FILE).is_file():
        return None
    try:
        return json.loads((folder / META_FILE).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return err


def is_artifact(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder that this tool wrote (its meta.json says so)."""
    meta = _read_json(Path(path))
    return isinstance(meta, dict) and meta.get("format") == ARTIFACT_FORMAT


def keep_other_files(old: Path, new: Path) -> None:
    """Move every entry of the replaced artifact folder ``old`` that is not an artifact file
    (the user's notes, plots...) into the new artifact folder ``new``; an IntSmoothError
    naming where they still are when one cannot be moved."""
    for entry in sorted(old.iterdir()):
        if entry.name in ARTIFACT_FILES or (new / entry.name).exists():
            continue
        try:
            entry.replace(new / entry.name)
        except OSError as err:
            raise IntSmoothError(
                f"the new artifact is in {new}, but moving {entry.name} from the old one failed "
                f"({err.strerror}); it and the other files you kept there are in {old}: move "
                "them yourself"
            ) from None


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
