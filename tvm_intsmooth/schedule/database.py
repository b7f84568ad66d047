"""Tuned schedule databases: where they live, which one fits a module, applying it in the build.

A database is a folder ``<target>/<key>/`` holding MetaSchedule's JSON database
(``database_workload.json.gz``: the tuned PrimFuncs, gzipped since MetaSchedule stores each as
about 100 kB of base64; ``database_tuning_record.json``: the best schedule trace of each) and
``info.json`` (the command that made it, trials, best time of each kernel, the target, the TVM
version and the files' SHA-256, checked when it is loaded: :mod:`.database_folder`). Databases
are looked up in the user's folder (:func:`user_schedules_dir`, where ``intsmooth tune`` writes)
and then in the shipped ones (:func:`schedules_dir`), which nothing writes.

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
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import tvm
import tvm_ffi
from tvm import tirx
from tvm.s_tir import meta_schedule as ms

from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.schedule.database_folder import (
    INFO,
    RECORDS,
    SCHEDULES_ENV,
    WORKLOADS,
    WORKLOADS_GZ,
    check_info,
    damaged_files,
    read_info,
    user_schedules_dir,
    write_folder,
)
from tvm_intsmooth.schedule.targets import TargetSpec, resolve_target, targets_dir

__all__ = [
    "INFO",
    "MODULE_EQUALITY",
    "RECORDS",
    "SCHEDULES_ENV",
    "WORKLOADS",
    "WORKLOADS_GZ",
    "ScheduleLookup",
    "TunedDatabase",
    "find_database",
    "load_database",
    "merge_records",
    "save_database",
    "schedules_dir",
    "user_schedules_dir",
    "workload_key",
]

# Workloads are compared as MetaSchedule's "ignore-tensor" equality does: structure and shapes,
# never the bytes of a constant.
MODULE_EQUALITY = "ignore-tensor"
AUTO = "auto"


def schedules_dir() -> Path:
    """The shipped databases: schedules/ beside targets/ (checkout or installed share folder),
    looked up after the user's (:func:`user_schedules_dir`) and never written."""
    return targets_dir().parent / "schedules"


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


def load_database(path: str | os.PathLike, target: TargetSpec | str | None = None) -> TunedDatabase:
    """Open a database folder written by :func:`tvm_intsmooth.pipeline.tune.tune`; with
    ``target``, for a build for that target. Its files must be those info.json records, tuned
    for ``target`` with this TVM version: else an IntSmoothError that names the file and says
    what to do."""
    path = Path(path)
    missing = [name for name in (WORKLOADS_GZ, RECORDS) if not (path / name).is_file()]
    if missing:
        raise IntSmoothError(
            f"schedule database {path}: {', '.join(missing)} not found (a database folder holds "
            f"{WORKLOADS_GZ} and {RECORDS}, as written by `intsmooth tune`)."
        )
    info = read_info(path)
    check_info(path, info, None if target is None else resolve_target(target))
    register_intrinsics()  # the records' traces name them
    try:
        with tempfile.TemporaryDirectory(prefix="intsmooth_db_") as tmp:
            # JSONDatabase reads both files when it is made and writes only on commit.
            (Path(tmp) / WORKLOADS).write_bytes(gzip.decompress((path / WORKLOADS_GZ).read_bytes()))
            database = ms.database.JSONDatabase(
                str(Path(tmp) / WORKLOADS),
                str(path / RECORDS),
                allow_missing=False,
                module_equality=MODULE_EQUALITY,
            )
    except Exception as err:  # gzip, JSON and MetaSchedule's parser each raise their own
        raise damaged_files(path, err) from None
    return TunedDatabase(path, database, info)


def _mean_seconds(record: ms.database.TuningRecord) -> float:
    runs = [float(s) for s in (record.run_secs or [])]
    return sum(runs) / len(runs) if runs else float("inf")


def merge_records(*lists: list[ms.database.TuningRecord]) -> list[ms.database.TuningRecord]:
    """The fastest record of every workload found in any of ``lists`` (workloads compared as
    MetaSchedule's "ignore-tensor" equality does); a workload of one list only is kept."""
    best: dict[int, ms.database.TuningRecord] = {}
    for records in lists:
        for record in records:
            key = tvm_ffi.structural_hash(record.workload.mod, skip_tensor_content=True)
            if key not in best or _mean_seconds(record) < _mean_seconds(best[key]):
                best[key] = record
    return list(best.values())


def save_database(
    records: list[ms.database.TuningRecord], path: str | os.PathLike, info: dict | None = None
) -> Path:
    """Write ``records`` (with their workloads) and ``info`` as a database folder readable by
    :func:`load_database`, whole or not at all (:func:`~.database_folder.write_folder`)."""
    path = Path(path)
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
        workloads = gzip.compress((Path(tmp) / WORKLOADS).read_bytes(), mtime=0)
        tuned = (Path(tmp) / RECORDS).read_bytes()
    return write_folder(path, workloads, tuned, info or {})


def find_database(key: str, target: TargetSpec | str) -> TunedDatabase | None:
    """The database for workload ``key`` on ``target``: the user's (:func:`user_schedules_dir`)
    if there is one, else the shipped one (:func:`schedules_dir`), else None (``host`` looks
    under the bundled target it resolves to, e.g. ``x86-vnni``)."""
    spec = resolve_target(target)
    for root in (user_schedules_dir(), schedules_dir()):
        folder = root / spec.resolved_name / key
        if (folder / RECORDS).is_file():
            return load_database(folder, spec)
    return None


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
        return load_database(self.schedules, self.spec)

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
