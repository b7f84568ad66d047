"""Writing RESULTS.tsv row by row, durably, and resuming an interrupted run.

Each row is written with a single ``write`` and made durable with ``fsync``, so a run killed at
any moment loses at most the row in flight. Reopening the file for the same run (same sidecar
metadata) drops a trailing partial line and reports which inputs are already done.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from pathlib import Path
from types import TracebackType
from typing import Any

from tvm_intsmooth.certify.results_tsv import (
    COLUMNS,
    REFERENCE_COLUMNS,
    SEQUENTIAL_COLUMNS,
    ResultRow,
    columns_for,
    json_default,
    normalize_metadata,
    parse_lines,
    parse_row,
    read_metadata,
    sidecar_path,
)
from tvm_intsmooth.errors import IntSmoothError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no flock; the file is then unlocked
    fcntl = None


def fresh_seed() -> int:
    """A seed from the operating system (no fixed seed is ever a default: docs/soundness.md)."""
    return secrets.randbits(64)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


def _named(err: OSError, path: Path) -> OSError:
    """``err`` naming ``path`` when it names no file (os.write on a descriptor does not)."""
    return err if err.filename is not None else OSError(err.errno, err.strerror, str(path))


def write_json_durably(path: Path, obj: Mapping[str, Any]) -> None:
    """Write ``path`` atomically: a temporary file of this writer's own, fsync, rename. An
    OSError (a full disk) leaves ``path`` as it was, and names it."""
    text = json.dumps(obj, default=json_default, sort_keys=True, indent=2) + "\n"
    write_durably(path, text.encode("utf-8"))


def write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`write_json_durably`)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise _named(err, path) from None
    try:
        os.fchmod(fd, 0o644)
        _write_all(fd, data)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except OSError as err:
        raise _named(err, path) from None
    finally:
        if fd >= 0:
            os.close(fd)
        Path(tmp).unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# Sidecar keys that describe how a run was executed, not what it computes: a run resumed with
# another value continues the same results.
EXECUTION_KEYS = frozenset({"threads"})


def _check_same_run(path: Path, old: dict[str, Any], new: dict[str, Any]) -> None:
    keys = (old.keys() | new.keys()) - EXECUTION_KEYS
    differ = sorted(key for key in keys if old.get(key) != new.get(key))
    if differ:
        key = differ[0]
        others = f" (also {', '.join(differ[1:])})" if len(differ) > 1 else ""
        raise IntSmoothError(
            f"{path} holds results of another run: {key} was {old.get(key)!r}, now "
            f"{new.get(key)!r}{others}; use another -o or delete {path} and {sidecar_path(path)}"
        )


def check_output_folder(path: str | Path) -> Path:
    """``path`` for an output file whose folder must exist (nothing is created on a typo)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise IntSmoothError(
            f"{path}: the folder {path.parent} does not exist; create it first or write elsewhere"
        )
    if path.is_dir():
        raise IntSmoothError(f"{path} is a folder; give a file name for the results")
    return path


class ResultsWriter:
    """Appends certification rows to a results file, creating it or resuming it.

    Everything happens under an exclusive lock on the results file, taken before any file is
    written: a second writer of the same path fails at once and changes nothing. A file with
    rows is resumed only with the same metadata in its sidecar (else an IntSmoothError naming
    the first differing key); a trailing partial line is dropped, and the rows' indices are
    :attr:`done`. A file without rows starts afresh: its sidecar, if any, is stale (left by a
    run that wrote no row) and is replaced (:attr:`replaced_stale_sidecar`).

    ``metadata["seed"]`` may be None: the seed of the rows being resumed is then reused
    (:attr:`resumed_seed`), and a fresh run draws one with ``new_seed`` (default: 64 bits from
    the operating system). The run's seed is ``metadata["seed"]`` afterwards. Use it as a
    context manager.
    """

    def __init__(
        self,
        path: str | Path,
        metadata: Mapping[str, Any],
        new_seed: Callable[[], int] | None = None,
    ) -> None:
        self.path = check_output_folder(path)
        wanted_seed = metadata.get("seed")
        normalize_metadata({**metadata, "seed": 0})  # every check before any file is touched
        self.resumed_seed: int | None = None
        self.replaced_stale_sidecar = False
        self._started = False  # this writer started the file (header and sidecar only)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            self._lock()
            self.existing_rows = tuple(self._open(metadata, wanted_seed, new_seed))
        except BaseException:
            os.close(self._fd)
            self._fd = -1
            raise
        self._done = {row.idx for row in self.existing_rows}

    def _open(self, metadata, wanted_seed, new_seed) -> list[ResultRow]:
        lines, data_rows = self._complete_lines()
        side = sidecar_path(self.path)
        if data_rows:
            old = read_metadata(self.path)
            if old is None:
                raise IntSmoothError(
                    f"{self.path} exists without its sidecar {side}, so it cannot be resumed; "
                    "use another -o or delete it"
                )
            if wanted_seed is None:
                self.resumed_seed = old.get("seed")
            seed = wanted_seed if wanted_seed is not None else self.resumed_seed
            self.metadata = normalize_metadata({**metadata, "seed": seed})
            _check_same_run(self.path, old, self.metadata)
            columns, rows = parse_lines(self.path, lines, self.metadata)
            if columns == REFERENCE_COLUMNS:
                raise IntSmoothError(
                    f"{self.path} has the reference's six columns, without nA and n, so it "
                    "cannot be resumed; use another -o"
                )
            return rows
        if wanted_seed is None:
            wanted_seed = (new_seed or fresh_seed)()
        self.metadata = normalize_metadata({**metadata, "seed": wanted_seed})
        self.replaced_stale_sidecar = side.exists()
        self._started = True
        write_json_durably(side, self.metadata)
        os.ftruncate(self._fd, 0)
        _write_all(self._fd, ("\t".join(columns_for(self.metadata)) + "\n").encode("utf-8"))
        return []

    def _complete_lines(self) -> tuple[list[str], bool]:
        """The complete lines of the file (a partial last line dropped) and whether any of them
        is a row (a line after the header)."""
        data = self.path.read_bytes()
        layouts = (COLUMNS, REFERENCE_COLUMNS, SEQUENTIAL_COLUMNS)
        headers = [("\t".join(c) + "\n").encode() for c in layouts]
        if not any(data.startswith(h) or h.startswith(data) for h in headers):
            raise IntSmoothError(
                f"{self.path} exists and is not a results file (its first line is not the "
                f"header {' '.join(COLUMNS)}); use another -o, nothing was changed"
            )
        complete = data[: data.rfind(b"\n") + 1]
        if len(complete) != len(data):
            os.ftruncate(self._fd, len(complete))
            os.fsync(self._fd)
        try:
            lines = complete.decode("utf-8").split("\n")[:-1]
        except UnicodeDecodeError as err:
            raise IntSmoothError(f"{self.path}: not a text results file ({err})") from err
        return lines, len(lines) > 1

    @property
    def done(self) -> AbstractSet[int]:
        """Indices of the rows in the file (read-only: skip these inputs)."""
        return self._done

    def _lock(self) -> None:
        if fcntl is None:
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            raise IntSmoothError(
                f"{self.path} is being written by another process; wait for it or use another -o"
            ) from err

    def write(self, row: ResultRow) -> None:
        """Append one row and make it durable (fsync) before returning."""
        if row.idx in self.done:
            raise ValueError(f"idx {row.idx} is already in {self.path}")
        line = row.to_line()
        try:
            parse_row(line[:-1].split("\t"), columns_for(self.metadata), self.metadata)
        except (ValueError, IntSmoothError) as err:
            raise IntSmoothError(f"{self.path}: refusing to write row {row}: {err}") from err
        try:  # a partial line left by a full disk is dropped when the run resumes
            _write_all(self._fd, line.encode("utf-8"))
        except OSError as err:
            raise _named(err, self.path) from None
        self._done.add(row.idx)

    def close(self) -> None:
        """Release the file (rows are already durable)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None and self._started and not self._done:
            # a run that failed before its first row (a remote device that never came up)
            # leaves no header-only file and no sidecar behind
            self.path.unlink(missing_ok=True)
            sidecar_path(self.path).unlink(missing_ok=True)
        self.close()
