"""Writing RESULTS.tsv row by row, durably, and resuming an interrupted run.

Each row is written with a single ``write`` and made durable with ``fsync``, so a run killed at
any moment loses at most the row in flight. Reopening the file for the same run (same sidecar
metadata) drops a trailing partial line and reports which inputs are already done.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from pathlib import Path
from types import TracebackType
from typing import Any

from tvm_intsmooth.certify.results_tsv import (
    COLUMNS,
    ResultRow,
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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


def _write_json_durably(path: Path, obj: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    text = json.dumps(obj, default=json_default, sort_keys=True, indent=2) + "\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _write_all(fd, text.encode("utf-8"))
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _check_same_run(path: Path, old: dict[str, Any], new: dict[str, Any]) -> None:
    differ = sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))
    if differ:
        key = differ[0]
        others = f" (also {', '.join(differ[1:])})" if len(differ) > 1 else ""
        raise IntSmoothError(
            f"{path} holds results of another run: {key} was {old.get(key)!r}, now "
            f"{new.get(key)!r}{others}; use another -o or delete {path} and {sidecar_path(path)}"
        )


class ResultsWriter:
    """Appends certification rows to a results file, creating it or resuming it.

    On a new path it writes the sidecar ``<path>.json`` with ``metadata`` and the header. On an
    existing file it requires the sidecar to hold the same metadata (else an IntSmoothError naming
    the first differing key), drops a trailing partial line, validates the rows and exposes their
    indices as :attr:`done` so that the caller skips them. Use it as a context manager.
    """

    def __init__(self, path: str | Path, metadata: Mapping[str, Any]) -> None:
        self.path = Path(path)
        self.metadata = normalize_metadata(metadata)
        existed = self.path.exists()
        if existed:
            old = read_metadata(self.path)
            if old is None:
                raise IntSmoothError(
                    f"{self.path} exists without its sidecar {sidecar_path(self.path)}, so it "
                    "cannot be resumed; use another -o or delete it"
                )
            _check_same_run(self.path, old, self.metadata)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _write_json_durably(sidecar_path(self.path), self.metadata)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            self._lock()
            self.existing_rows = tuple(self._recover())
        except BaseException:
            os.close(self._fd)
            raise
        self._done = {row.idx for row in self.existing_rows}

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

    def _recover(self) -> list[ResultRow]:
        data = self.path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        if len(complete) != len(data):
            os.ftruncate(self._fd, len(complete))
            os.fsync(self._fd)
        if not complete:
            _write_all(self._fd, ("\t".join(COLUMNS) + "\n").encode("utf-8"))
            return []
        try:
            lines = complete.decode("utf-8").split("\n")[:-1]
        except UnicodeDecodeError as err:
            raise IntSmoothError(f"{self.path}: not a text results file ({err})") from err
        columns, rows = parse_lines(self.path, lines, self.metadata)
        if columns != COLUMNS:
            raise IntSmoothError(
                f"{self.path} has the reference's six columns, without nA and n, so it cannot be "
                "resumed; use another -o"
            )
        return rows

    def write(self, row: ResultRow) -> None:
        """Append one row and make it durable (fsync) before returning."""
        if row.idx in self.done:
            raise ValueError(f"idx {row.idx} is already in {self.path}")
        line = row.to_line()
        try:
            parse_row(line[:-1].split("\t"), COLUMNS, self.metadata)
        except (ValueError, IntSmoothError) as err:
            raise IntSmoothError(f"{self.path}: refusing to write row {row}: {err}") from err
        _write_all(self._fd, line.encode("utf-8"))
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
        self.close()
