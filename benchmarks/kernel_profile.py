"""Where the time of one call of the smoothed function goes, tuned build against untuned.

Builds the smoothed classifier (noise + network + votes) with the matching tuned database
(schedules/, see ``intsmooth tune``) and with the default schedules; checks that both give
the same votes; times them interleaved; then times every kernel call of each (the Relax VM's
instrument hook) and lists the largest with their share of the time, their share of the
model's multiply-accumulates and their GMAC/s (against the int8 peak of ``peak.py``): the
profile that says which kernels hold a build back. Both builds keep every kernel a call of its
own (``fuse_samples=False``; what users run merges the per-sample kernels into one call, phase
``sample_loops``, with the same kernels inside).

    python benchmarks/kernel_profile.py [--model M.onnx] [--batch 100] [--schedules DB]
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_common import (
    add_model_argument,
    add_threads_argument,
    machine_description,
    onnx_input_shape,
    resolve_model,
    set_threads,
    tvm_threads,
)
from graph_breakdown import IMAGES, interleaved_median_ms


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_model_argument(p)
    p.add_argument("--batch", type=int, default=100, help="noisy samples per call (default 100)")
    add_threads_argument(p)
    p.add_argument("--repeats", type=int, default=5, help="timed calls per build (default 5)")
    p.add_argument("--sigma", type=float, default=0.25, help="noise level (default 0.25)")
    p.add_argument("--top", type=int, default=12, help="kernels listed per build (default 12)")
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: wall-clock per kernel (default); cpu: the calling thread's CPU time, robust "
        "to other load on the machine, meaningful with --threads 1 (the kernels then run in it)",
    )
    p.add_argument(
        "--schedules",
        default="auto",
        metavar="DB",
        help="tuned database folder (default auto: the shipped one that matches)",
    )
    return p.parse_args(argv)


def kernel_times(vm, args, calls: int = 3, clock=time.perf_counter) -> dict:
    """Seconds per call of the function and calls per call, by kernel symbol: each kernel's
    best over ``calls`` calls of the function (robust to load spikes on a shared machine)."""
    best: dict[str, float] = {}
    count: collections.Counter = collections.Counter()
    started: dict[str, float] = {}
    total: dict[str, float] = collections.defaultdict(float)

    def instrument(_func, symbol, before_run, _ret, *_args):
        if before_run:
            started[symbol] = clock()
        else:
            total[symbol] += clock() - started.pop(symbol)
            count[symbol] += 1
        return 0

    vm.set_instrument(instrument)
    for _ in range(calls):
        total.clear()
        vm["main"](*args)
        for symbol, seconds in total.items():
            best[symbol] = min(best.get(symbol, float("inf")), seconds)
    vm.set_instrument(None)
    return {s: (t, count[s] // calls) for s, t in best.items()}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    set_threads(args.threads)
    threads = tvm_threads()
    import tvm
    from tvm import relax

    from tvm_intsmooth.pipeline.build import build
    from tvm_intsmooth.pipeline.phases import fused_module
    from tvm_intsmooth.pipeline.smooth import smooth
    from tvm_intsmooth.pipeline.tune import tunable_tasks
    from tvm_intsmooth.schedule import resolve_target
    from tvm_intsmooth.schedule.database import ScheduleLookup

    with tempfile.TemporaryDirectory() as workdir:
        model, description = resolve_model(args.model, Path(workdir))
        with np.load(IMAGES[onnx_input_shape(model)]) as data:
            images = data["x"]
        smoothed = smooth(model, images[:64], args.sigma, batch=args.batch)
    spec = resolve_target("host")
    macs = {task.task_name: m for task, m in tunable_tasks(fused_module(smoothed.mod, spec), spec)}
    words = [np.array([1, 2], np.int64), np.zeros(3, np.int64), np.array([args.batch], np.int64)]
    inputs = [tvm.runtime.tensor(a) for a in (images[100:101], *words)]
    vms = {}
    for name, schedules in (("tuned", args.schedules), ("untuned", None)):
        lookup = ScheduleLookup(spec, schedules)
        start = time.perf_counter()
        # Each kernel a call of its own, so that the VM's hook times them one by one.
        executable = build(
            smoothed.mod, spec, require_integer_only=True, schedules=lookup, fuse_samples=False
        )
        print(f"{name}: built in {time.perf_counter() - start:.0f} s, {lookup.summary()}")
        vms[name] = relax.VirtualMachine(executable, tvm.cpu())
    votes = [vm["main"](*inputs).numpy() for vm in vms.values()]
    if not np.array_equal(*votes):
        raise SystemExit(f"the builds disagree: {votes}")
    from peak import measure_peak

    peak = measure_peak(threads=[threads], clock=args.clock).int8(threads)
    print(f"{description}, batch {args.batch}, {threads} threads, target {spec.tvm_target}")
    print(machine_description())
    print(f"votes equal: {votes[0].ravel().tolist()}; int8 peak {peak:.0f} GMAC/s")
    calls = {name: (vm["main"], inputs) for name, vm in vms.items()}
    for name, ms in interleaved_median_ms(calls, args.repeats).items():
        print(f"{name:20s} {ms:9.1f} ms per call  {1e3 * args.batch / ms:8.0f} samples/s")
    for name, vm in vms.items():
        clock = time.thread_time if args.clock == "cpu" else time.perf_counter
        times = kernel_times(vm, inputs, args.repeats, clock)
        total = sum(t for t, _ in times.values())
        all_macs = sum(macs.get(s, 0) * n for s, (_, n) in times.items())
        mac_time = sum(t for s, (t, _) in times.items() if macs.get(s))
        print(
            f"\n{name}: kernels {1e3 * total:.1f} ms per call in all, of which multiply-"
            f"accumulate kernels {1e3 * mac_time:.1f} ms ({all_macs / mac_time / 1e9:.0f} "
            f"GMAC/s, {100 * all_macs / mac_time / 1e9 / peak:.0f}% of peak)"
        )
        print("       ms  time%  MAC%  GMAC/s  calls kernel")
        for symbol, (t, n) in sorted(times.items(), key=lambda kv: -kv[1][0])[: args.top]:
            m = macs.get(symbol, 0) * n
            rate = f"{m / t / 1e9:7.0f}" if m else "      -"
            print(
                f"{1e3 * t:9.1f} {100 * t / total:6.1f} {100 * m / all_macs:5.1f} {rate}  "
                f"x{n:<4d} {symbol[:70]}"
            )


if __name__ == "__main__":
    main()
