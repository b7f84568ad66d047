"""Tuned schedule databases: where they live, which one fits a module, applying it in the build.

A database is a folder ``schedules/<target>/<key>/`` holding MetaSchedule's JSON database
(``database_workload.json.gz``: the tuned PrimFuncs, gzipped since MetaSchedule stores each as
about 100 kB of base64; ``database_tuning_record.json``: the best schedule trace of each) and
``info.json`` (the command that made it, trials, best time of each kernel).

``key`` is a hash of every PrimFunc of the module as the build schedules it (after the blocked
layout, legalization and fusion), except the ones that come scheduled (the noise sampler, which
holds sigma's noise table). Weights, biases and requantization multipliers are Relax constants
passed to the PrimFuncs as arguments, so the key, like MetaSchedule's "ignore-tensor" workload
equality, depends on the architecture and the shapes, not on the weights. Each blocked
convolution's data bound (the ``intsmooth.data_max`` annotation, which decides whether an
intrinsic is exact for it) is rounded up to a class (127, 255, int16, int32), so calibration data
changes the key only where it moves a conv between classes (an activation that can be negative).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import tvm
import tvm_ffi
from tvm import tirx
from tvm.s_tir import meta_schedule as ms

from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.schedule.targets import TargetSpec, resolve_target, targets_dir

__all__ = [
    "MODULE_EQUALITY",
    "ScheduleLookup",
    "TunedDatabase",
    "find_database",
    "load_database",
    "save_database",
    "schedules_dir",
    "workload_key",
]

# Workloads are compared as MetaSchedule's "ignore-tensor" equality does: structure and shapes,
# never the bytes of a constant.
MODULE_EQUALITY = "ignore-tensor"
WORKLOADS = "database_workload.json"
WORKLOADS_GZ = WORKLOADS + ".gz"
RECORDS = "database_tuning_record.json"
INFO = "info.json"
AUTO = "auto"


SCHEDULES_ENV = "INTSMOOTH_SCHEDULES"


def schedules_dir() -> Path:
    """Where databases are looked up and written by default: ``$INTSMOOTH_SCHEDULES`` if set,
    else the shipped ones, schedules/ beside targets/ (checkout or installed share folder)."""
    override = os.environ.get(SCHEDULES_ENV)
    return Path(override) if override else targets_dir().parent / "schedules"


def _schedulable(func) -> bool:
    """A PrimFunc that a database can schedule: not one that comes scheduled (the noise
    sampler, whose noise table is written into its code and changes with sigma)."""
    return isinstance(func, tirx.PrimFunc) and (
        func.attrs is None or "tirx.is_scheduled" not in func.attrs
    )


def workload_key(fused: tvm.IRModule) -> str:
    """A hash of the module's schedulable PrimFuncs with constants ignored (16 hex digits).

    ``fused`` is the module after the build's fusion passes
    (:func:`tvm_intsmooth.pipeline.phases.fused_module`).
    """
    hashes = sorted(
        f"{tvm_ffi.structural_hash(func, skip_tensor_content=True):016x}"
        for _, func in fused.functions_items()
        if _schedulable(func)
    )
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest()[:16]


def register_intrinsics() -> None:
    """Register the project's tensor intrinsics, which tuned traces name."""
    import tvm_intsmooth.schedule.intrinsics  # noqa: F401  (registers on import)


@dataclass
class TunedDatabase:
    """One database folder and the MetaSchedule database loaded from it."""

    path: Path
    database: ms.database.Database
    info: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.info.get("key", self.path.name)

    def describe(self) -> str:
        trials = self.info.get("trials")
        made = f", {trials} trials" if trials else ""
        return f"{self.path} ({self.info.get('target', self.path.parent.name)}{made})"


def load_database(path: str | os.PathLike) -> TunedDatabase:
    """Open a database folder written by :func:`tvm_intsmooth.pipeline.tune.tune`."""
    path = Path(path)
    missing = [name for name in (WORKLOADS_GZ, RECORDS) if not (path / name).is_file()]
    if missing:
        raise IntSmoothError(
            f"schedule database {path}: {', '.join(missing)} not found (a database folder holds "
            f"{WORKLOADS_GZ} and {RECORDS}, as written by `intsmooth tune`)."
        )
    register_intrinsics()  # the records' traces name them
    try:
        info = json.loads((path / INFO).read_text()) if (path / INFO).is_file() else {}
        with tempfile.TemporaryDirectory(prefix="intsmooth_db_") as tmp:
            # JSONDatabase reads both files when it is made and writes only on commit.
            (Path(tmp) / WORKLOADS).write_bytes(gzip.decompress((path / WORKLOADS_GZ).read_bytes()))
            database = ms.database.JSONDatabase(
                str(Path(tmp) / WORKLOADS),
                str(path / RECORDS),
                allow_missing=False,
                module_equality=MODULE_EQUALITY,
            )
    except (OSError, ValueError, RuntimeError) as err:
        raise IntSmoothError(f"schedule database {path} is unreadable: {err}") from None
    return TunedDatabase(path, database, info)


def save_database(records: list[ms.database.TuningRecord], path: str | os.PathLike) -> Path:
    """Write ``records`` (with their workloads) as a database folder readable by
    :func:`load_database`."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="intsmooth_db_") as tmp:
        out = ms.database.JSONDatabase(
            str(Path(tmp) / WORKLOADS), str(Path(tmp) / RECORDS), module_equality=MODULE_EQUALITY
        )
        for record in records:
            workload = out.commit_workload(record.workload.mod)
            out.commit_tuning_record(
                ms.database.TuningRecord(
                    record.trace, workload, record.run_secs, record.target, record.args_info
                )
            )
        workloads = (Path(tmp) / WORKLOADS).read_bytes()
        (path / WORKLOADS_GZ).write_bytes(gzip.compress(workloads, mtime=0))
        shutil.copyfile(Path(tmp) / RECORDS, path / RECORDS)
    return path


def find_database(key: str, target: TargetSpec | str) -> TunedDatabase | None:
    """The database for workload ``key`` on ``target`` in :func:`schedules_dir`, or None
    (``host`` looks under the bundled target it resolves to, e.g. ``x86-vnni``)."""
    spec = resolve_target(target)
    folder = schedules_dir() / spec.resolved_name / key
    return load_database(folder) if (folder / RECORDS).is_file() else None


class ScheduleLookup:
    """Finds the database for a module inside the build pipeline and applies it.

    ``schedules`` is ``"auto"`` (the shipped database matching the module's key, if any), a
    database folder, a :class:`TunedDatabase`, or None (untuned). After the build, ``key`` is
    the module's workload key, ``used`` the database applied (None when untuned) and
    ``tuned_functions`` / ``functions`` how many PrimFuncs got a tuned schedule.
    """

    def __init__(self, target: TargetSpec | str, schedules=AUTO):
        self.spec = resolve_target(target)
        self.schedules = schedules
        self.key: str | None = None
        self.used: TunedDatabase | None = None
        self.functions = 0
        self.tuned_functions = 0

    @classmethod
    def of(cls, target: TargetSpec | str, schedules) -> ScheduleLookup:
        """``schedules`` itself when it is a lookup, else a new lookup for it."""
        return schedules if isinstance(schedules, ScheduleLookup) else cls(target, schedules)

    def _database(self) -> TunedDatabase | None:
        if self.schedules is None:
            return None
        if isinstance(self.schedules, TunedDatabase):
            return self.schedules
        if isinstance(self.schedules, str) and self.schedules == AUTO:
            return find_database(self.key, self.spec)
        return load_database(self.schedules)

    def apply(self, fused: tvm.IRModule) -> tvm.IRModule:
        """Apply the database to the fused module (PrimFuncs it has no record for stay as
        they are, for the default schedule)."""
        self.key = workload_key(fused)
        self.functions = sum(_schedulable(f) for _, f in fused.functions_items())
        self.used = self._database()
        if self.used is None:
            return fused
        with self.spec.tvm_target, self.used.database:
            out = tvm.relax.transform.MetaScheduleApplyDatabase()(fused)
        # Functions that were schedulable and now come scheduled (not the noise sampler, which
        # was scheduled before).
        self.tuned_functions = sum(
            _schedulable(fused[gv]) and not _schedulable(f) for gv, f in out.functions_items()
        )
        return out

    def summary(self) -> dict:
        """What the build used, for artifact metadata."""
        return {
            "key": self.key,
            "database": None if self.used is None else str(self.used.path),
            "tuned_functions": self.tuned_functions,
            "functions": self.functions,
        }
