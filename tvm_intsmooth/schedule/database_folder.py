"""Database folders on disk: where ``intsmooth tune`` writes, which folders it may write, how a
folder is written so that nothing is lost, and what is checked when one is read.

A folder holds MetaSchedule's two files and ``info.json``, which records what the database is
for and what its files are: ``format``, ``key``, ``target``, ``tvm`` (the TVM version that tuned
it) and ``files`` (the SHA-256 of each MetaSchedule file). :func:`check_info` compares them with
the build that wants the database, so that a damaged file or a database of another target or
TVM version is one clear error instead of a traceback or an abort inside LLVM.
:func:`write_folder` writes a whole folder beside the old one and swaps it in, so that a crash or
a full disk leaves the previous database whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import tvm

from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.schedule.targets import TargetSpec

DATABASE_FORMAT = "tvm_intsmooth.schedules/1"
SCHEDULES_ENV = "INTSMOOTH_SCHEDULES"
WORKLOADS = "database_workload.json"
WORKLOADS_GZ = WORKLOADS + ".gz"
RECORDS = "database_tuning_record.json"
INFO = "info.json"
FILES = (WORKLOADS_GZ, RECORDS)


def user_schedules_dir() -> Path:
    """Where ``intsmooth tune`` writes by default and ``compile`` looks first:
    ``$INTSMOOTH_SCHEDULES``, else ``$XDG_CACHE_HOME/tvm_intsmooth/schedules`` (``~/.cache/...``
    without XDG). Never the installed package's folder."""
    override = os.environ.get(SCHEDULES_ENV)
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tvm_intsmooth" / "schedules"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_info(path: Path) -> dict:
    """The info.json of a database folder ({} when it has none), or an IntSmoothError."""
    if not (path / INFO).is_file():
        return {}
    try:
        info = json.loads((path / INFO).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise _damaged(path, INFO, f"unreadable: {err}") from None
    if not isinstance(info, dict):
        raise _damaged(path, INFO, "not a JSON object")
    return info


def check_info(path: Path, info: dict, spec: TargetSpec | None) -> None:
    """IntSmoothError unless the folder's files are those info.json records (when it records
    them), and it was tuned for ``spec`` (when given) with this TVM version."""
    for name, digest in (info.get("files") or {}).items():
        if name in FILES and _sha256((path / name).read_bytes()) != digest:
            raise _damaged(path, name, "its SHA-256 is not the one info.json records")
    tuned_for = info.get("target")
    if spec is not None and tuned_for and tuned_for != spec.resolved_name:
        raise IntSmoothError(
            f"schedule database {path} was tuned for {tuned_for}, but this build is for "
            f"{spec.resolved_name}: its schedules use {tuned_for}'s instructions. Use a database "
            f"tuned for {spec.resolved_name} (`intsmooth tune ... --target {spec.resolved_name}`"
            "), or build untuned (--schedules none)."
        )
    tvm_version = info.get("tvm")
    if tvm_version and tvm_version != tvm.__version__:
        raise IntSmoothError(
            f"schedule database {path} was tuned with TVM {tvm_version}, and this is TVM "
            f"{tvm.__version__}: its schedule traces may not replay here. Tune it again with "
            "this TVM (`intsmooth tune`, the command is in its info.json), or build untuned "
            "(--schedules none)."
        )


def _damaged(path: Path, name: str, what: str) -> IntSmoothError:
    return IntSmoothError(
        f"schedule database {path}: {name} is damaged or was changed after tuning ({what}). "
        "Tune it again (`intsmooth tune`; the command is in its info.json), or remove the folder "
        "and build untuned (--schedules none)."
    )


def damaged_files(path: Path, err: BaseException) -> IntSmoothError:
    """The error for MetaSchedule files that cannot be read."""
    return _damaged(path, f"{WORKLOADS_GZ} or {RECORDS}", f"{type(err).__name__}: {err}")


def is_database(path: Path) -> bool:
    """Whether ``path`` is a database folder that intsmooth wrote (info.json says so, or, for
    folders of older versions, names its key and target beside the MetaSchedule files)."""
    try:
        info = read_info(path)
    except IntSmoothError:
        return False
    if info.get("format") == DATABASE_FORMAT:
        return True
    return {"key", "target"} <= info.keys() and all((path / name).is_file() for name in FILES)


def check_destination(path: Path, force: bool = False) -> None:
    """Refuse an output folder that exists, is not empty and is not a database of ours (unless
    ``force``): tune would replace the files there."""
    if path.exists() and not force:
        if not path.is_dir():
            raise IntSmoothError(f"{path} is a file; give tune a folder (-o DB)")
        if any(path.iterdir()) and not is_database(path):
            raise IntSmoothError(
                f"{path} exists and is not a schedule database written by intsmooth (no info.json "
                "of ours); tune would replace what is there. Choose another -o, or pass --force "
                "to replace it"
            )


def write_folder(path: Path, workloads_gz: bytes, records: bytes, info: dict) -> Path:
    """Write a database folder at ``path`` whole or not at all: a new folder beside it, then
    swapped in; info.json gains ``format``, the TVM version and the files' SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {
        "format": DATABASE_FORMAT,
        "tvm": tvm.__version__,
        **info,
        "files": {WORKLOADS_GZ: _sha256(workloads_gz), RECORDS: _sha256(records)},
    }
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    moved = None  # the old folder, while it is out of the way
    try:
        (tmp / WORKLOADS_GZ).write_bytes(workloads_gz)
        (tmp / RECORDS).write_bytes(records)
        (tmp / INFO).write_text(json.dumps(info, indent=1) + "\n")
        if path.exists():
            moved = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent)) / "db"
            path.replace(moved)
        tmp.replace(path)
    except BaseException:
        if moved is not None and moved.exists() and not path.exists():
            moved.replace(path)  # the previous database, whole
        shutil.rmtree(tmp, ignore_errors=True)
        if moved is not None:
            shutil.rmtree(moved.parent, ignore_errors=True)
        raise
    if moved is not None:
        shutil.rmtree(moved.parent, ignore_errors=True)
    return path
