"""Tune TVM's build of the float model, for the ``tvm-float32-tuned`` row of bench_smoothing.

The peer that shows what tuning alone buys: the same ONNX model in float32, batch bound,
tuned by MetaSchedule with the same search (``tvm_intsmooth.pipeline.tune``: the target's
rules, XGBoost cost model, a kernel's tuned schedule kept only where it beats the default).
The database goes to ``benchmarks/float_schedules/<target>/<key>``, where bench_smoothing
finds it::

    python benchmarks/tune_float.py --trials 384 [--model M.onnx] [--batch 100] [--target host]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import bench_common


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    bench_common.add_model_argument(p)
    p.add_argument(
        "--batch", type=int, default=100, help="batch the build is tuned for (default 100)"
    )
    bench_common.add_threads_argument(p)
    p.add_argument("--trials", type=int, default=384, help="measured candidates (default 384)")
    p.add_argument(
        "--trials-per-iter",
        type=int,
        default=16,
        help="candidates per search round of one task (default 16: every kernel gets a round "
        "when --trials >= 16 x kernels)",
    )
    p.add_argument("--target", default="host", help="TVM target (default host)")
    args = p.parse_args(argv)
    bench_common.set_threads(args.threads)
    from tvm_intsmooth.pipeline.tune import tune

    with tempfile.TemporaryDirectory(prefix="tune_float_") as tmp:
        model, _ = bench_common.resolve_model(args.model, Path(tmp))
        mod, _ = bench_common.float_module(model, args.batch)
        out, _ = bench_common.float_database(mod, args.target)
        result = tune(
            mod, args.target, trials=args.trials, output=out, trials_per_iter=args.trials_per_iter
        )
    print(result.summary())
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
