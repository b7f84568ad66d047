"""Print the markdown table of README.md's "Samples saved, nothing lost" from results files.

    python benchmarks/certified_accuracy/sequential_table.py FIXED.tsv SEQUENTIAL.tsv [...]

For each file: certified accuracy at the listed radii of the sequential runs (``intsmooth
report`` draws the same), estimation samples per image (mean, median, max), and wall time per
image (mean, median). The files are read with :func:`tvm_intsmooth.certify.read_results`, so
every row is re-checked against its sidecar first.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tvm_intsmooth.certify import certified_accuracy, read_results
from tvm_intsmooth.certify.report import listed_radii


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="+", help="RESULTS.tsv files")
    args = parser.parse_args()
    runs = [read_results(path) for path in args.results]
    radii = listed_radii(runs)
    if radii is None:
        raise SystemExit("no sequential run among the files: nothing lists the radii")
    head = ["procedure", *(f"r = {r:g}" for r in radii)]
    head += ["mean n", "median n", "max n", "s/image (mean)", "s/image (median)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for path, run in zip(args.results, runs, strict=True):
        meta = run.metadata or {}
        if meta.get("mode") == "sequential":
            name = f"sequential, n_max = {meta['n_max']:,}"
        else:
            name = f"fixed n = {meta.get('n', '?'):,}"
        n = np.array([row.n for row in run.rows])
        seconds = np.array([row.time_s for row in run.rows])
        cells = [name, *(f"{a:.3f}" for a in certified_accuracy(run, radii))]
        cells += [f"{n.mean():,.0f}", f"{np.median(n):,.0f}", f"{n.max():,}"]
        cells += [f"{seconds.mean():.2f}", f"{np.median(seconds):.2f}"]
        print("| " + " | ".join(cells) + f" |  <!-- {path.name} -->")


if __name__ == "__main__":
    main()
