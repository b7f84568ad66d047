"""Peak resident memory of ``SmoothedClassifier.counts(x, n)`` for several n.

Counting runs in fixed-size batches, so memory should not grow with n. The script compiles the
smoothed model once into an artifact (or takes ``--artifact``), then for each n starts a fresh
Python process that loads the artifact, counts n samples and reports its peak RSS
(``resource.getrusage``) and the largest RSS sampled while it counts. Example (n = 100000 takes a
while with default schedules; run it in the background)::

    nice -n 10 python benchmarks/peak_memory.py --n 1000,100000 --json peak_memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import bench_common
import numpy as np


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    bench_common.add_model_argument(p)
    p.add_argument("--artifact", help="an existing artifact folder (skips compiling --model)")
    p.add_argument("--n", default="1000,100000", help="comma-separated sample counts")
    p.add_argument("--batch", type=int, default=100, help="compiled batch size (default 100)")
    bench_common.add_threads_argument(p)
    p.add_argument("--sigma", type=float, default=0.25, help="noise level (default 0.25)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument("--child", nargs=2, metavar=("ARTIFACT", "N"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        args.n = [int(v) for v in args.n.split(",")]
    except ValueError:
        p.error(f"--n must be comma-separated integers, got {args.n!r}")
    return args


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class RssSampler:
    """Samples the current RSS every ``interval`` seconds in a thread; keeps the maximum."""

    def __init__(self, interval: float = 0.05):
        import psutil

        self.process = psutil.Process()
        self.interval = interval
        self.max_mib = self.now_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now_mib(self) -> float:
        return self.process.memory_info().rss / 2**20

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.max_mib = max(self.max_mib, self.now_mib())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.max_mib = max(self.max_mib, self.now_mib())


def child(artifact: str, n: int) -> None:
    """Load the artifact, count ``n`` samples of one image, print the figures as JSON.

    Two figures: the process's peak RSS (``ru_maxrss``, which includes importing TVM and loading
    the library) and the largest RSS sampled while counting (what counting itself holds).
    """
    from tvm_intsmooth.runtime import SmoothedClassifier

    classifier = SmoothedClassifier.load(artifact)
    image = bench_common.load_images()[-1]
    classifier.counts(image, classifier.batch, seed=1, progress=False)  # one batch: warm
    before = _peak_mib()
    start = time.perf_counter()
    with RssSampler() as sampler:
        rss_start = sampler.now_mib()
        counts = classifier.counts(image, n, seed=2, progress=False)
    seconds = time.perf_counter() - start
    result = {
        "n": n,
        "seconds": seconds,
        "peak_before_counting_mib": before,
        "peak_mib": _peak_mib(),
        "rss_at_start_of_counting_mib": rss_start,
        "max_rss_while_counting_mib": sampler.max_mib,
        "votes": int(np.sum(counts)),
    }
    print(json.dumps(result))


def build_artifact(args, workdir: Path) -> tuple[Path, str]:
    from tvm_intsmooth.pipeline.smooth import smooth
    from tvm_intsmooth.runtime import save_artifact

    model, description = bench_common.resolve_model(args.model, workdir)
    calib = bench_common.load_images()[:32]
    smoothed = smooth(model, calib, args.sigma, batch=args.batch)
    return save_artifact(smoothed, workdir / "artifact"), description


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench_common.set_threads(args.threads)
    if args.child:
        child(args.child[0], int(args.child[1]))
        return 0
    with tempfile.TemporaryDirectory(prefix="peak_memory_") as tmp:
        if args.artifact:
            artifact, description = Path(args.artifact), f"artifact {args.artifact}"
        else:
            artifact, description = build_artifact(args, Path(tmp))
        rows = []
        for n in args.n:
            cmd = [sys.executable, __file__, "--child", str(artifact), str(n)]
            out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
            if out.returncode:
                raise SystemExit(f"child for n={n} failed:\n{out.stderr}")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"n={n} done in {rows[-1]['seconds']:.0f} s", file=sys.stderr)
    print(f"model: {description}; threads {args.threads or 'default'}\n")
    print(
        "| n | seconds | process peak RSS (MiB) | RSS when counting starts (MiB) "
        "| max RSS while counting (MiB) |"
    )
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['n']:,} | {r['seconds']:.1f} | {r['peak_mib']:.1f} "
            f"| {r['rss_at_start_of_counting_mib']:.1f} | {r['max_rss_while_counting_mib']:.1f} |"
        )
    if len(rows) > 1:
        for key in ("peak_mib", "max_rss_while_counting_mib"):
            ratio = rows[-1][key] / rows[0][key]
            print(f"\n{key} ratio n={rows[-1]['n']:,} / n={rows[0]['n']:,}: {ratio:.3f}", end="")
        print()
    if args.json:
        Path(args.json).write_text(json.dumps({"model": description, "results": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
