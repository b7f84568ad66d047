"""``intsmooth report``: certified accuracy table (and plot) from RESULTS.tsv files."""

from __future__ import annotations

import argparse
from pathlib import Path

from tvm_intsmooth.cli.common import radii_list

HELP = "certified-accuracy table and plot from certify results"
# What is kept when a file cannot be written (cli/main.py prints it)
KEPT_ON_DISK_ERROR = "the results files were only read"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "report",
        help=HELP,
        description=HELP
        + (
            ": the fraction of images classified correctly with a certified radius >= r, at r = 0, "
            "0.25, 0.5, ... as far as the runs' sigma and n allow (at the listed radii when a run "
            "is sequential, or at --radii); several files side by side."
        ),
    )
    p.add_argument("results", type=Path, nargs="+", help="RESULTS.tsv file(s)")
    p.add_argument(
        "--png", type=Path, default=None, help="write a certified accuracy vs radius plot"
    )
    p.add_argument(
        "--radii",
        type=radii_list,
        default=None,
        metavar="R1,R2,...",
        help="the radii of the table (default: the listed radii of sequential runs, else 0, "
        "0.25, 0.5, ...)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    report(args.results, args.png, args.radii)
    return 0


def report(
    paths: list[Path], png: Path | None = None, radii: tuple[float, ...] | None = None
) -> None:
    """Print the certified-accuracy table of the results files ``paths`` (partial runs marked)
    at ``radii`` (default: see :func:`tvm_intsmooth.certify.format_accuracy_table`), and plot
    it to ``png``."""
    from tvm_intsmooth.certify import format_accuracy_table, plot_certified_accuracy, read_results

    names = [path.name for path in paths]
    unique = len(set(names)) == len(names)  # short labels unless two runs share a file name
    results = {}
    for path in paths:
        run = read_results(path)
        label = path.name if unique else str(path)
        expected = (run.metadata or {}).get("images")
        if isinstance(expected, int) and len(run.rows) < expected:
            label += f" (partial: {len(run.rows)} of {expected})"
            print(f"{path}: partial run, {len(run.rows)} of {expected} images certified")
        results[label] = run
    print(format_accuracy_table(results, radii))
    if png is not None:
        plot_certified_accuracy(results, png)
        print(f"wrote {png}")
