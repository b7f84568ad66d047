"""Re-decide which tuned schedules a database keeps, by timings that a loaded machine cannot skew.

``intsmooth tune`` keeps a kernel's tuned schedule where MetaSchedule's runner timed it faster
than the schedule an untuned build gives the kernel; the runner times wall-clock latency on all
threads, which other work on a shared machine distorts (a parallel kernel waits for its slowest
thread). This script times every tuned kernel of a database and its default schedule on one
thread by the thread's CPU time (the best of ``--repeats`` calls, each kernel alone, inputs in
cache), and writes the database with only the tuned schedules that are faster by more than
``--margin``; info.json's tasks get these timings (``best_us``, ``default_us``, ``kept``) and a
``kept_by`` note. The model options are those of the ``intsmooth tune`` command that made the
database (its info.json records them).

The decision is made against today's build of the model. Where a change of the graph (fusion,
layout) changed some kernels, their records no longer match and are dropped, the unchanged
kernels' records carry over, and the database is written under today's workload key (by default
beside the old folder, which can then be removed; info.json's ``carried_from`` names the key it
was tuned under, and its tasks are today's, with the old statistics where a task kept its
name)::

    python benchmarks/keep_faster.py DB --model M.onnx --calib DATA [--sigma 0.25] [--batch 100] \\
        [--target x86-vnni] [-o OUT]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ["TVM_NUM_THREADS"] = "1"  # before TVM makes its thread pool: one thread


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("database", type=Path, help="database folder written by intsmooth tune")
    p.add_argument("--model", required=True, type=Path, help="the ONNX model it was tuned for")
    p.add_argument("--calib", required=True, help="the calibration data of the tune command")
    p.add_argument("--sigma", type=float, default=0.25)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--target", default=None, help="default: the database's target")
    p.add_argument("--repeats", type=int, default=30, help="timed calls per kernel (best taken)")
    p.add_argument("--margin", type=float, default=0.03, help="keep tuned when faster by this")
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        help="write here (default: over the database, or beside it under today's key)",
    )
    return p.parse_args(argv)


def cpu_us(func, target, repeats: int) -> float:
    """Best thread CPU time (us) of one call of ``func`` (a scheduled PrimFunc) on one thread."""
    import numpy as np
    import tvm
    from tvm.s_tir import meta_schedule as ms

    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target)
    rng = np.random.default_rng(0)
    args = []
    for info in ms.arg_info.ArgInfo.from_prim_func(func):
        shape, dtype = [int(d) for d in info.shape], str(info.dtype)
        data = rng.integers(0, 64, shape) if "int" in dtype else np.zeros(shape)
        args.append(tvm.runtime.tensor(data.astype(dtype)))
    lib["main"](*args)
    best = float("inf")
    for _ in range(repeats):
        start = time.thread_time()
        lib["main"](*args)
        best = min(best, time.thread_time() - start)
    return best * 1e6


def today_info(db, tasks: list, key: str) -> dict:
    """The database's info.json for today's build of its model: today's ``key`` (with
    ``carried_from``, the key it was tuned under, where it changed) and today's tasks, each
    with the old entry's statistics where a task of that name was tuned, else not kept."""
    info = dict(db.info)
    old = {entry["name"]: entry for entry in info.get("tasks", [])}
    if info.get("key", db.path.name) != key:
        info.setdefault("carried_from", info.get("key", db.path.name))  # the key tuned under
        info["key"] = key
    info["tasks"] = [
        {**old.get(task.task_name, {"name": task.task_name, "macs": macs}), "kept": False}
        for task, macs in tasks
    ]  # "kept" is set again from the records that match today's kernels
    return info


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from tvm_intsmooth.cli.smoothing_args import smooth_model
    from tvm_intsmooth.pipeline.phases import fused_module
    from tvm_intsmooth.pipeline.tune import default_schedule, tunable_tasks
    from tvm_intsmooth.schedule.database import load_database, save_database, workload_key
    from tvm_intsmooth.schedule.targets import resolve_target

    db = load_database(args.database)
    spec = resolve_target(args.target or db.info.get("target", "host"))
    target = spec.tvm_target
    smoothed = smooth_model(args.model, args.calib, args.sigma, batch=args.batch)
    fused = fused_module(smoothed.mod, spec)
    tasks = tunable_tasks(fused, spec)
    kept, report = [], {}
    for task, _ in tasks:
        mod = task.dispatched[0]
        record = db.database.query_tuning_record(mod, target, "main")
        if record is None:
            continue
        tuned = db.database.query_ir_module(mod, target, "main")["main"]
        tuned_us = cpu_us(tuned, target, args.repeats)
        default_us = cpu_us(default_schedule(mod["main"], spec), target, args.repeats)
        faster = tuned_us < default_us * (1 - args.margin)
        if faster:
            kept.append(record)
        report[task.task_name] = (tuned_us, default_us, faster)
        print(
            f"{task.task_name[:64]:64s} tuned {tuned_us:9.1f} us  default {default_us:9.1f} us  "
            f"{'kept' if faster else 'dropped'}",
            flush=True,
        )
    info, output = today_info(db, tasks, workload_key(fused)), args.output
    for entry in info["tasks"]:
        if entry["name"] in report:
            entry["best_us"], entry["default_us"], entry["kept"] = report[entry["name"]]
            if entry.get("macs"):
                entry["gmacs"] = entry["macs"] / entry["best_us"] / 1e3
    if output is None:
        output = args.database.parent / info["key"] if "carried_from" in info else args.database
    info["kept_by"] = (
        f"benchmarks/keep_faster.py: one thread, CPU time, best of {args.repeats} calls; "
        f"kept where faster by more than {args.margin:.0%}"
    )
    info.pop("files", None)
    out = save_database(kept, output, info)
    print(f"{len(kept)} of {len(report)} tuned kernels kept: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
