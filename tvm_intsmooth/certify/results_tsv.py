"""RESULTS.tsv: certification results in the layout of Cohen et al.'s reference ``certify.py``.

The file is tab separated with the header ``idx label predict radius correct time`` followed by two
extra columns, ``nA`` and ``n``, from which anyone can recompute the bound. The radius is written
as the reference writes it (``"{:.3}"``, three significant digits) and the time as
``str(datetime.timedelta)``, so ``pandas.read_csv(path, sep="\\t")`` and the reference's
``analyze.py`` read the file unchanged. The run's metadata (seed, sigma, n0, n, alpha, noise kind,
TV bound, target, artifact hash, ...) lives in a JSON sidecar, ``<path>.json``. Sequential runs
(certification at chosen radii) append three columns, ``decided pA_lower stop``, and record
their radii and n_max in the sidecar (:mod:`.sequential_rows`).

:func:`read_results` validates every row. When the sidecar gives sigma, alpha and the TV bound,
each row's certificate is recomputed from its nA and n, checked against the printed prediction and
radius, and the exact radius replaces the three-digit one (so that accuracy at a radius is never
overstated by rounding).
"""

from __future__ import annotations

import datetime
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from tvm_intsmooth.certify.cohen import ABSTAIN, Certificate, certify_count
from tvm_intsmooth.certify.sequential import SequentialCertificate
from tvm_intsmooth.certify.sequential_rows import (
    SEQUENTIAL_EXTRA_COLUMNS,
    SEQUENTIAL_REQUIRED_METADATA,
    check_sequential_metadata,
    check_sequential_row,
    is_sequential,
    sequential_radius,
)
from tvm_intsmooth.errors import IntSmoothError

COLUMNS = ("idx", "label", "predict", "radius", "correct", "time", "nA", "n")
REFERENCE_COLUMNS = COLUMNS[:6]
SEQUENTIAL_COLUMNS = COLUMNS + SEQUENTIAL_EXTRA_COLUMNS
REQUIRED_METADATA = ("seed", "sigma", "n0", "n", "alpha", "noise", "tv_bound")

_INT = re.compile(r"-?[0-9]+")
_FLOAT = re.compile(r"[0-9]+(\.[0-9]*)?(e[+-]?[0-9]+)?")
_TIME = re.compile(r"(?:([0-9]+) days?, )?([0-9]+):([0-5][0-9]):([0-5][0-9])(?:\.([0-9]{6}))?")
# "{:.3}" keeps three significant digits: the printed radius is within 0.5% of the exact one.
_RADIUS_RTOL = 6e-3


@dataclass(frozen=True)
class ResultRow:
    """One certified input: a line of RESULTS.tsv.

    ``predict`` is -1 for an abstention; ``time_s`` is the wall time in seconds; ``n_a`` and ``n``
    are None only in files of the reference's six-column layout. ``decided`` (the largest listed
    radius certified), ``p_a_lower`` (the anytime-valid bound) and ``stop`` (``"decided"`` or
    ``"n_max"``) are set only in rows of sequential runs, whose ``n`` is the number of
    estimation samples used.
    """

    idx: int
    label: int
    predict: int
    radius: float
    correct: int
    time_s: float
    n_a: int | None = None
    n: int | None = None
    decided: float | None = None
    p_a_lower: float | None = None
    stop: str | None = None

    @classmethod
    def from_certificate(
        cls,
        idx: int,
        label: int,
        certificate: Certificate | SequentialCertificate,
        time_s: float,
        sigma: float | None = None,
    ) -> ResultRow:
        """The row for input ``idx`` with true ``label``, certified in ``time_s`` seconds.

        A :class:`SequentialCertificate` needs the run's ``sigma``: its row's radius is
        ``sigma * Phi^-1(pA_lower)`` (at least the listed radius decided; see
        :mod:`.sequential_rows`).
        """
        row = cls(
            idx=int(idx),
            label=int(label),
            predict=certificate.prediction,
            radius=certificate.radius,
            correct=int(certificate.prediction == int(label)),
            time_s=float(time_s),
            n_a=certificate.n_a,
            n=certificate.n,
        )
        if not isinstance(certificate, SequentialCertificate):
            return row
        if sigma is None:
            raise IntSmoothError("the row of a sequential certificate needs the run's sigma")
        return replace(
            row,
            radius=sequential_radius(certificate, sigma),
            decided=certificate.radius,
            p_a_lower=float(certificate.p_a_lower),
            stop=certificate.stop_reason,
        )

    def to_line(self) -> str:
        """The row as the reference's certify.py prints it, plus nA and n (and a sequential
        run's decided, pA_lower and stop), with a newline."""
        elapsed = str(datetime.timedelta(seconds=self.time_s))
        line = (
            f"{self.idx}\t{self.label}\t{self.predict}\t{self.radius:.3}\t{self.correct}\t"
            f"{elapsed}\t{self.n_a}\t{self.n}"
        )
        if self.decided is not None:
            line += f"\t{self.decided!r}\t{self.p_a_lower!r}\t{self.stop}"
        return line + "\n"


@dataclass(frozen=True)
class CertifyResults:
    """The validated contents of a results file and its sidecar (None when there is none)."""

    path: Path
    metadata: dict[str, Any] | None
    rows: tuple[ResultRow, ...]


def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar of a results file: ``RESULTS.tsv`` -> ``RESULTS.tsv.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def normalize_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Check run metadata and return it as it reads back from JSON (numpy scalars made plain).

    Requires the keys in ``REQUIRED_METADATA`` with sane values: sigma > 0, alpha in (0, 1),
    n0 >= 1 and n >= 1 integers, tv_bound in [0, 1). A sequential run (``"mode":
    "sequential"``) has ``radii`` and ``n_max`` instead of ``n``.
    """
    try:
        meta = json.loads(
            json.dumps(dict(metadata), default=json_default, sort_keys=True, allow_nan=False)
        )
    except (TypeError, ValueError) as err:
        raise IntSmoothError(f"run metadata cannot be written as JSON: {err}") from err
    sequential = is_sequential(meta)
    if "mode" in meta and not sequential:
        raise IntSmoothError(
            f"run metadata: mode = {meta['mode']!r}; the only mode is 'sequential' "
            "(fixed-n runs have no mode)"
        )
    required = REQUIRED_METADATA
    if sequential:
        required = tuple(k for k in required if k != "n") + SEQUENTIAL_REQUIRED_METADATA
    missing = [key for key in required if key not in meta]
    if missing:
        raise IntSmoothError(f"run metadata lacks {', '.join(missing)}: pass them all")
    if sequential:
        check_sequential_metadata(meta)
    checks = {
        "sigma": lambda v: isinstance(v, (int, float)) and v > 0,
        "alpha": lambda v: isinstance(v, (int, float)) and 0 < v < 1,
        "n0": lambda v: isinstance(v, int) and v >= 1,
        "n": lambda v: isinstance(v, int) and v >= 1,
        "tv_bound": lambda v: isinstance(v, (int, float)) and 0 <= v < 1,
    }
    for key, ok in checks.items():
        if sequential and key == "n":  # a sequential run has n_max instead
            continue
        if isinstance(meta[key], bool) or not ok(meta[key]):
            raise IntSmoothError(f"run metadata: {key} = {meta[key]!r} is not a valid value")
    return meta


def columns_for(meta: Mapping[str, Any]) -> tuple[str, ...]:
    """The columns of a results file written for run metadata ``meta`` (sequential or not)."""
    return SEQUENTIAL_COLUMNS if is_sequential(meta) else COLUMNS


def parse_time(text: str) -> float:
    """Seconds from ``str(datetime.timedelta)`` text such as ``0:00:01.250000``."""
    match = _TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"time {text!r} is not h:mm:ss[.ffffff]")
    days, hours, minutes, seconds, micros = match.groups()
    whole = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds)
    return whole + int(micros or 0) / 1e6


def _parse_int(name: str, text: str) -> int:
    if _INT.fullmatch(text) is None:
        raise ValueError(f"{name} {text!r} is not an integer")
    return int(text)


def parse_row(
    fields: list[str], columns: tuple[str, ...], meta: dict[str, Any] | None
) -> ResultRow:
    if len(fields) != len(columns):
        raise ValueError(f"{len(fields)} fields, expected {len(columns)}")
    idx, label, predict, correct = (
        _parse_int(name, fields[i])
        for name, i in (("idx", 0), ("label", 1), ("predict", 2), ("correct", 4))
    )
    if _FLOAT.fullmatch(fields[3]) is None:
        raise ValueError(f"radius {fields[3]!r} is not a non-negative number")
    row = ResultRow(idx, label, predict, float(fields[3]), correct, parse_time(fields[5]))
    if idx < 0 or label < 0 or predict < ABSTAIN:
        raise ValueError("idx and label must be >= 0, predict >= -1")
    if correct != int(predict == label):
        raise ValueError(f"correct = {correct} but predict = {predict} and label = {label}")
    if predict == ABSTAIN and row.radius != 0.0:
        raise ValueError(f"an abstention with radius {fields[3]}")
    if len(columns) == len(REFERENCE_COLUMNS):
        return row
    n_a, n = _parse_int("nA", fields[6]), _parse_int("n", fields[7])
    if not 0 <= n_a <= n or n < 1:
        raise ValueError(f"nA = {n_a} and n = {n}: expected 0 <= nA <= n and n >= 1")
    row = replace(row, n_a=n_a, n=n)
    if columns == SEQUENTIAL_COLUMNS:
        row = replace(
            row,
            decided=_parse_float("decided", fields[8]),
            p_a_lower=_parse_float("pA_lower", fields[9]),
            stop=fields[10],
        )
    if meta is None:
        return row
    if is_sequential(meta) != (columns == SEQUENTIAL_COLUMNS):
        raise ValueError("the sidecar and the columns disagree on whether this is a sequential run")
    return _recompute(row, meta)


def _parse_float(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} {text!r} is not a finite number")
    return value


def _recompute(row: ResultRow, meta: dict[str, Any]) -> ResultRow:
    if is_sequential(meta):
        radius = check_sequential_row(
            row.predict, row.radius, row.n_a, row.n, row.decided, row.p_a_lower, row.stop, meta
        )
        return replace(row, radius=radius)
    if row.n != meta["n"]:
        raise ValueError(f"n = {row.n} but the sidecar's n is {meta['n']}")
    guess = max(row.predict, 0)
    cert = certify_count(guess, row.n_a, row.n, meta["sigma"], meta["alpha"], meta["tv_bound"])
    if cert.abstained != (row.predict == ABSTAIN):
        expected = "an abstention" if cert.abstained else f"radius {cert.radius:.3}"
        raise ValueError(
            f"nA = {row.n_a} of n = {row.n} gives {expected}, not predict {row.predict}"
        )
    if not math.isclose(row.radius, cert.radius, rel_tol=_RADIUS_RTOL, abs_tol=1e-12):
        raise ValueError(f"radius {row.radius} but nA and n give {cert.radius:.6g}")
    return replace(row, radius=cert.radius)


def read_metadata(path: str | Path) -> dict[str, Any] | None:
    """The sidecar metadata of a results file, or None when it has no sidecar."""
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise IntSmoothError(f"{side}: not a readable JSON sidecar ({err})") from err
    if not isinstance(meta, dict):
        raise IntSmoothError(f"{side}: expected a JSON object of run metadata")
    try:
        return normalize_metadata(meta)
    except IntSmoothError as err:
        raise IntSmoothError(f"{side}: {err}") from err


def parse_lines(
    path: Path, lines: list[str], meta: dict[str, Any] | None
) -> tuple[tuple[str, ...], list[ResultRow]]:
    """Validate the header and rows of complete ``lines`` (newlines stripped) of ``path``."""
    if not lines:
        raise IntSmoothError(f"{path}: empty file, expected the header {' '.join(COLUMNS)}")
    columns = tuple(lines[0].split("\t"))
    if columns not in (COLUMNS, REFERENCE_COLUMNS, SEQUENTIAL_COLUMNS):
        raise IntSmoothError(
            f"{path}, line 1: header {lines[0]!r} is not the results layout ({' '.join(COLUMNS)})"
        )
    if meta is not None and is_sequential(meta) != (columns == SEQUENTIAL_COLUMNS):
        kind = "a sequential run's" if is_sequential(meta) else "a fixed-n run's"
        raise IntSmoothError(
            f"{path}, line 1: header {lines[0]!r} does not match its sidecar, which describes "
            f"{kind} ({' '.join(columns_for(meta))}); the file and its sidecar do not belong "
            "together"
        )
    rows: list[ResultRow] = []
    seen: set[int] = set()
    for lineno, line in enumerate(lines[1:], start=2):
        try:
            row = parse_row(line.split("\t"), columns, meta)
        except (ValueError, IntSmoothError) as err:
            raise IntSmoothError(
                f"{path}, line {lineno}: {err}; the file is damaged: fix or delete that line"
            ) from err
        if row.idx in seen:
            raise IntSmoothError(f"{path}, line {lineno}: idx {row.idx} appears a second time")
        seen.add(row.idx)
        rows.append(row)
    return columns, rows


def read_results(path: str | Path) -> CertifyResults:
    """Read and validate a results file (and its sidecar, if any).

    Accepts this project's layout and the reference's six-column one. Every problem raises a
    one-line :class:`IntSmoothError` naming the file and line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise IntSmoothError(f"{path}: cannot read the results file ({err})") from err
    if text and not text.endswith("\n"):
        lineno = text.count("\n") + 1
        raise IntSmoothError(
            f"{path}, line {lineno}: incomplete last line (the run was interrupted); "
            "rerun the same command to resume it"
        )
    meta = read_metadata(path)
    _, rows = parse_lines(path, text.split("\n")[:-1], meta)
    return CertifyResults(path, meta, tuple(rows))
