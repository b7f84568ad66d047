"""Certified accuracy from results files: values, a text table and a plot.

Certified accuracy at radius r is the fraction of inputs that were certified correctly with a
radius of at least r: the reference's ``analyze.py`` (``ApproximateAccuracy``). Runs of sequential
certification decided their listed radii only, so a table with one of them is drawn at the
listed radii.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from scipy.special import ndtri

from tvm_intsmooth.certify.cohen import ABSTAIN, lower_confidence_bound
from tvm_intsmooth.certify.results_tsv import CertifyResults, ResultRow
from tvm_intsmooth.certify.sequential import confidence_sequence_lower
from tvm_intsmooth.certify.sequential_rows import is_sequential
from tvm_intsmooth.errors import IntSmoothError

Results = CertifyResults | Sequence[ResultRow]

RADIUS_STEP = 0.25


def _rows(results: Results) -> Sequence[ResultRow]:
    rows = results.rows if isinstance(results, CertifyResults) else results
    if len(rows) == 0:
        where = f"{results.path}: " if isinstance(results, CertifyResults) else ""
        raise IntSmoothError(f"{where}no results rows: certify at least one input first")
    return rows


def max_certifiable_radius(sigma: float, n: int, alpha: float, tv_bound: float = 0.0) -> float:
    """The largest radius CERTIFY can return with ``n`` estimation draws.

    It is reached when the guessed class wins all n draws: the Clopper-Pearson bound is then
    ``alpha ** (1 / n)``, so the radius is ``sigma * Phi^-1(alpha ** (1 / n) - tv_bound)``
    (for sigma 0.25, n 100,000, alpha 0.001: about 0.95). 0.0 when even that abstains.
    """
    p_a_lower = lower_confidence_bound(n, n, alpha) - tv_bound
    return float(sigma * ndtri(p_a_lower)) if p_a_lower >= 0.5 else 0.0


def _radius_ceiling(results: Results) -> float:
    meta = results.metadata if isinstance(results, CertifyResults) else None
    if is_sequential(meta):  # every one of n_max draws for the class: the anytime bound
        p_a_lower = confidence_sequence_lower(meta["n_max"], meta["n_max"], meta["alpha"])
        p_a_lower -= meta["tv_bound"]
        return float(meta["sigma"] * ndtri(p_a_lower)) if p_a_lower > 0.5 else 0.0
    if meta is not None:
        return max_certifiable_radius(meta["sigma"], meta["n"], meta["alpha"], meta["tv_bound"])
    return max(row.radius for row in _rows(results))


def listed_radii(results_list: Sequence[Results]) -> np.ndarray | None:
    """The radii listed by the sequential runs among ``results_list`` (sorted, each once), or
    None when none of them is sequential."""
    metas = [r.metadata for r in results_list if isinstance(r, CertifyResults)]
    radii = {float(r) for meta in metas if is_sequential(meta) for r in meta["radii"]}
    return np.array(sorted(radii)) if radii else None


def default_radii(results_list: Sequence[Results], step: float = RADIUS_STEP) -> np.ndarray:
    """Radii 0, step, 2 step, ... up to the largest radius any of the runs can certify, and
    at least up to 1.0. A run's ceiling comes from its sidecar (see
    :func:`max_certifiable_radius`), or is its largest radius when it has none.
    """
    top = max([1.0] + [_radius_ceiling(results) for results in results_list])
    return np.arange(math.floor(top / step + 1e-9) + 1) * step


def certified_accuracy(results: Results, radii: Sequence[float] | None = None) -> np.ndarray:
    """Fraction of rows with ``correct == 1`` and ``radius >= r``, for each r in ``radii``.

    ``radii`` defaults to :func:`default_radii` of this run.
    """
    rows = _rows(results)
    radii = default_radii([results]) if radii is None else np.asarray(radii, dtype=float)
    correct = np.array([row.correct == 1 for row in rows])
    radius = np.array([row.radius for row in rows])
    return np.array([np.mean(correct & (radius >= r)) for r in radii])


def format_accuracy_table(
    results_by_label: Mapping[str, Results], radii: Sequence[float] | None = None
) -> str:
    """A text table of certified accuracy, one column per run (e.g. integer and float side by
    side), one line per radius, then each run's number of inputs, abstentions, mean and largest
    number of estimation samples per input, and mean time.

    ``radii`` defaults to the listed radii of the sequential runs if there is one
    (:func:`listed_radii`), else to :func:`default_radii`.
    """
    if not results_by_label:
        raise IntSmoothError("no results to tabulate: give at least one results file")
    labels = list(results_by_label)
    runs = [results_by_label[label] for label in labels]
    if radii is None:
        radii = listed_radii(runs)
    radii = default_radii(runs) if radii is None else np.asarray(radii, dtype=float)
    accuracy = [certified_accuracy(run, radii) for run in runs]
    width = max([9] + [len(label) + 2 for label in labels])

    def line(first: str, cells: list[str]) -> str:
        return f"{first:<14}" + "".join(f"{cell:>{width}}" for cell in cells)

    lines = [line("radius", labels)]
    lines += [line(f"{r:.2f}", [f"{acc[i]:.3f}" for acc in accuracy]) for i, r in enumerate(radii)]
    rows = [_rows(run) for run in runs]
    lines.append(line("inputs", [str(len(r)) for r in rows]))
    lines.append(line("abstained", [str(sum(x.predict == ABSTAIN for x in r)) for r in rows]))
    if all(x.n is not None for r in rows for x in r):  # not the reference's six columns
        lines.append(line("mean n", [f"{np.mean([x.n for x in r]):.0f}" for r in rows]))
        lines.append(line("max n", [str(max(x.n for x in r)) for r in rows]))
    lines.append(line("mean time (s)", [f"{np.mean([x.time_s for x in r]):.3f}" for r in rows]))
    return "\n".join(lines) + "\n"


def plot_certified_accuracy(
    results_by_label: Mapping[str, Results],
    png_path: str | Path,
    max_radius: float | None = None,
    title: str | None = None,
) -> Path:
    """Plot certified accuracy against radius, one step curve per run, into a PNG.

    The curves are exact: certified accuracy only changes at the radii in the files. The x axis
    ends at ``max_radius`` (default: the last of :func:`default_radii`). Returns the PNG's path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not results_by_label:
        raise IntSmoothError("no results to plot: give at least one results file")
    runs = list(results_by_label.values())
    if max_radius is None:
        max_radius = float(default_radii(runs)[-1])
    fig = Figure(figsize=(6.4, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for label, run in results_by_label.items():
        radii = [row.radius for row in _rows(run) if row.correct == 1]
        xs = np.unique(np.clip([0.0, *radii, max_radius], 0.0, max_radius))
        # certified accuracy is constant on (x[i-1], x[i]] and equals its value at x[i]
        ax.step(xs, certified_accuracy(run, xs), where="pre", label=label)
    ax.set_xlim(0.0, max_radius)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("radius (L2, pixels scaled to [0, 1])")
    ax.set_ylabel("certified accuracy")
    if title:
        ax.set_title(title)
    ax.legend(loc="upper right")
    fig.tight_layout()
    png_path = Path(png_path)
    try:
        fig.savefig(png_path, format="png")
    except OSError as err:
        raise IntSmoothError(f"{png_path}: cannot write the plot ({err})") from err
    return png_path
