"""``intsmooth report``: certified accuracy table (and plot) from RESULTS.tsv files."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "certified-accuracy table and plot from certify results"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "report",
        help=HELP,
        description=HELP
        + (
            ": the fraction of images classified correctly with a certified radius >= r, at r = 0, "
            "0.25, 0.5, ... as far as the runs' sigma and n allow; several files side by side."
        ),
    )
    p.add_argument("results", type=Path, nargs="+", help="RESULTS.tsv file(s)")
    p.add_argument(
        "--png", type=Path, default=None, help="write a certified accuracy vs radius plot"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    report(args.results, args.png)
    return 0


def report(paths: list[Path], png: Path | None = None) -> None:
    """Print the certified-accuracy table of the results files ``paths`` (partial runs marked),
    and plot it to ``png``."""
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
    print(format_accuracy_table(results))
    if png is not None:
        plot_certified_accuracy(results, png)
        print(f"wrote {png}")
