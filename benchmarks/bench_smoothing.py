"""Smoothed samples per second: TVM integer smoothing against every float and int8 peer.

Every method draws ``--n`` noisy copies of one image in batches of ``--batch``, runs the
classifier on them and counts the argmax votes:

- tvm-int-tuned: ``SmoothedClassifier`` of the integer smoothed model built with the tuned
  schedule database that matches it (schedules/<target>/, see ``intsmooth tune``); left out,
  with a message, where none matches;
- tvm-int-untuned: the same model with the default schedules (blocked layout, fixed kernels);
  both run noise, clipping, classifier and vote counting inside the compiled graph;
- tvm-float32: TVM's build of the float ONNX model (default schedules, not tuned), numpy
  Gaussian noise on the host;
- tvm-float32-tuned: the same with the batch bound and the database that
  ``benchmarks/tune_float.py`` tuned for it (left out, with a message, where there is none);
- ort-float32: ONNX Runtime on the float model, numpy Gaussian noise;
- ort-int8: ONNX Runtime on the same model quantized by ``onnxruntime.quantization.
  quantize_static`` (QDQ or QOperator, per-channel int8 weights, uint8 activations: U8S8,
  calibrated on a few images), numpy Gaussian noise;
- torch-float32: PyTorch eager on the model's architecture (its own weights: speed does not
  depend on them), ``torch.randn`` noise, as in Cohen et al.'s code.

All run in one process with the same batch size; by default no thread variable is set, so
each runtime runs with the threads a user gets (TVM: one per physical core, set by
tvm_intsmooth; ONNX Runtime and PyTorch: their defaults); ``--threads N`` sets them all.
Repeats are interleaved (one run of every method per round) so that a change in machine load
hits all of them alike; each timed run follows a pause (``--settle``) and one untimed batch of
its method; the figure is the median over rounds after warm-up rounds. Every process
(this one and each ``--alone`` one) first frees one large block, so that the C allocator
is in the same state for every method (``bench_common.settle_allocator``). Beside
samples/s the table gives each method's CPU time / wall time (the whole process's CPU time over
the run: a runtime whose threads keep spinning after its run takes CPU from the next one, which
shows here), the share of the machine's exact int8 multiply-accumulate peak
(``benchmarks/peak.py``, measured in the same process, on TVM's thread count, with the model's
MACs per sample: the best vector instruction's; where the CPU has Intel's AMX, the tile unit's
peak is a row of its own, the share against it that row's ratio), the ratio to every other
method, and the resident memory each method added when it was prepared. ``--alone`` also runs
every method alone, each in a fresh process, and gives those figures and ratios beside the
interleaved ones. ``--certify K`` also times ``intsmooth certify`` (n0 = 100, n =
``--certify-n``) of the tuned artifact on K images, against
n0 + n times the per-sample time of the same build in the table. Example::

    python benchmarks/bench_smoothing.py --n 1000 --repeats 5 --alone \
        --certify 3 --json resnet20.json --chart smoothing_speed.png
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import bench_common
import numpy as np
from bench_common import CpuWall

METHODS = (
    "tvm-int-tuned",
    "tvm-int-untuned",
    "tvm-float32",
    "tvm-float32-tuned",
    "ort-float32",
    "ort-int8",
    "torch-float32",
)
Runner = Callable[[int, int], np.ndarray]  # (n, seed) -> vote counts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    bench_common.add_model_argument(p)
    p.add_argument("--batch", type=int, default=100, help="noisy samples per call (default 100)")
    bench_common.add_threads_argument(p)
    p.add_argument("--n", type=int, default=1000, help="samples per timed run (default 1000)")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    p.add_argument(
        "--settle",
        type=float,
        default=0.5,
        help="seconds of sleep before each timed run (default 0.5): ONNX Runtime's, OpenMP's "
        "and TVM's workers spin for a while after a run and, on few cores, take CPU from the "
        "next method (with 0, TVM's CNN run right after ONNX Runtime's ran at a third of its "
        "speed alone). After the pause each method runs one untimed batch first: the first "
        "call after an idle pause is slower (the ResNet-20's took 5.9-9.0 ms against 5.5-5.6 "
        "steady), a fixed cost that weighs most on the fastest method's short run",
    )
    p.add_argument("--sigma", type=float, default=0.25, help="noise level (default 0.25)")
    p.add_argument("--calibration", type=int, default=32, help="calibration images (default 32)")
    p.add_argument(
        "--calib",
        metavar="DATA",
        help="calibrate on the training split of DATA (500 images), as `intsmooth compile "
        "--calib DATA` does, instead of the first --calibration bundled test images (the "
        "tuned database's key can depend on the calibration: use the data it was tuned with)",
    )
    p.add_argument(
        "--ort-int8-format",
        choices=("qdq", "qoperator"),
        default="qdq",
        help="ONNX Runtime quantized model format (default qdq)",
    )
    p.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated subset of {', '.join(METHODS)}",
    )
    p.add_argument("--target", default="host", help="TVM target (default host)")
    p.add_argument(
        "--certify",
        type=int,
        default=0,
        metavar="K",
        help="also time `intsmooth certify` of the tuned artifact on K images (default 0)",
    )
    p.add_argument("--certify-n", type=int, default=100_000, help="certify's n (default 100000)")
    p.add_argument("--no-peak", action="store_true", help="leave out the int8 peak row")
    p.add_argument(
        "--alone",
        action="store_true",
        help="also run every method alone, each in a fresh process, and compare",
    )
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument("--chart", metavar="PNG", help="also draw a bar chart of samples/s to PNG")
    args = p.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown:
        p.error(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    if min(args.batch, args.threads or 1, args.n, args.repeats) < 1 or args.warmup < 0:
        p.error("--batch, --threads, --n and --repeats must be positive, --warmup >= 0")
    if args.n % args.batch:
        p.error("--n must be a multiple of --batch (every method runs whole batches)")
    return args


def tvm_int_runner(smoothed, image: np.ndarray, args, schedules) -> tuple[Runner, object]:
    """The integer smoothed classifier built with ``schedules`` ("auto": the matching tuned
    database; None: default schedules), and the lookup that tells what was applied."""
    import tvm
    from tvm import relax

    from tvm_intsmooth.pipeline.build import build
    from tvm_intsmooth.runtime import SmoothedClassifier
    from tvm_intsmooth.schedule.database import ScheduleLookup

    lookup = ScheduleLookup(args.target, schedules)
    ex = build(smoothed.mod, args.target, require_integer_only=True, schedules=lookup)
    classifier = SmoothedClassifier(relax.VirtualMachine(ex, tvm.cpu()), smoothed.metadata())
    return (lambda n, seed: classifier.counts(image, n, seed=seed, progress=False)), lookup


def noisy_batches(image: np.ndarray, args, n: int, seed: int):
    """``n / batch`` float32 batches of ``image / 255`` plus numpy Gaussian noise."""
    base = np.broadcast_to(image.astype(np.float32) / 255.0, (args.batch, *image.shape))
    rng = np.random.default_rng(seed)
    for _ in range(n // args.batch):
        noise = rng.standard_normal(base.shape, dtype=np.float32)
        noise *= np.float32(args.sigma)
        yield base + noise


def tvm_float_runner(model: Path, image: np.ndarray, args, tuned: bool = False) -> Runner:
    """TVM's build of the float model, host noise: default schedules (symbolic batch), or
    (``tuned``) batch bound and the database of ``benchmarks/tune_float.py``."""
    import tvm
    from tvm import relax

    from tvm_intsmooth.importer import import_onnx
    from tvm_intsmooth.pipeline.build import build

    if tuned:
        mod, imported = bench_common.float_module(model, args.batch)
        schedules, target = bench_common.float_database(mod, args.target)
        if not schedules.is_dir():
            raise LookupError(
                f"no tuned float database for this model on {target} ({schedules}): run "
                "`python benchmarks/tune_float.py` first"
            )
    else:
        imported = import_onnx(model)
        mod, schedules = imported.mod, None
    vm = relax.VirtualMachine(build(mod, args.target, schedules=schedules), tvm.cpu())

    def run(n: int, seed: int) -> np.ndarray:
        counts = np.zeros(imported.num_classes, np.int64)
        for batch in noisy_batches(image, args, n, seed):
            logits = vm["main"](tvm.runtime.tensor(np.ascontiguousarray(batch))).numpy()
            counts += np.bincount(logits.argmax(axis=1), minlength=imported.num_classes)
        return counts

    return run


def ort_session(model: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:  # else ONNX Runtime's default: one thread per physical core
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def ort_int8_model(model: Path, calib: np.ndarray, out: Path, fmt: str) -> Path:
    """``model`` quantized statically: per-channel int8 weights, uint8 activations (U8S8)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    name = ort_session(model, 1).get_inputs()[0].name
    floats = calib.astype(np.float32) / 255.0

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{name: img[None]} for img in floats])

        def get_next(self):
            return next(self.items, None)

    quantize_static(
        str(model),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return out


def ort_runner(model: Path, image: np.ndarray, args) -> Runner:
    session = ort_session(model, args.threads)
    name = session.get_inputs()[0].name
    classes = session.get_outputs()[0].shape[-1]

    def run(n: int, seed: int) -> np.ndarray:
        counts = np.zeros(classes, np.int64)
        for batch in noisy_batches(image, args, n, seed):
            logits = session.run(None, {name: batch})[0]
            counts += np.bincount(logits.argmax(axis=1), minlength=classes)
        return counts

    return run


def torch_runner(image: np.ndarray, args, architecture: str) -> Runner:
    import torch

    from tvm_intsmooth.train.models import build_model

    if args.threads:  # else PyTorch's default
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    channels = image.shape[0]
    model = build_model(architecture, image.shape, 10, [0.3] * channels, [0.35] * channels).eval()
    base = torch.from_numpy(image.astype(np.float32) / 255.0).expand(args.batch, *image.shape)

    def run(n: int, seed: int) -> np.ndarray:
        torch.manual_seed(seed)
        counts = torch.zeros(10, dtype=torch.int64)
        with torch.inference_mode():
            for _ in range(n // args.batch):
                logits = model(base + torch.randn_like(base) * args.sigma)
                counts += torch.bincount(logits.argmax(dim=1), minlength=10)
        return counts.numpy()

    return run


def measure(runners: dict[str, Runner], args) -> tuple[dict, dict]:
    """Seconds per run of ``args.n`` samples and the CPU time / wall time of each run, rounds
    interleaved over the methods. Each timed run follows the settling pause and then one
    untimed batch of the same method (see ``--settle``)."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    cpu: dict[str, list[float]] = {name: [] for name in runners}
    for round_index in range(args.warmup + args.repeats):
        for name, run in runners.items():
            time.sleep(args.settle)  # the previous runtime's spinning workers go idle first
            if args.settle:
                run(args.batch, round_index)  # this runtime's start after the pause, untimed
            with CpuWall() as timer:
                counts = run(args.n, round_index)
            if int(np.sum(counts)) != args.n:
                raise RuntimeError(f"{name}: {np.sum(counts)} votes for {args.n} samples")
            if round_index >= args.warmup:
                times[name].append(timer.wall)
                cpu[name].append(timer.ratio)
    return times, cpu


def measure_alone(argv: list[str], methods: list[str], tmp: Path) -> dict[str, dict]:
    """Every method run alone, each in a fresh process of this script (same options, no
    peak, no certify): its samples/s and CPU time / wall time."""
    import subprocess

    drop = {"--alone", "--no-peak"}
    with_value = {"--methods", "--json", "--chart", "--certify"}
    base, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word in with_value:
            skip = True
        elif word not in drop and not any(word.startswith(f"{w}=") for w in with_value):
            base.append(word)
    # Without --threads, the environment as the parent found it: tvm_intsmooth set
    # TVM_NUM_THREADS here since, and the child must size its pool itself.
    env = dict(os.environ)
    if "--threads" not in " ".join(argv):
        for name in (*bench_common.THREAD_VARIABLES, "TVM_BIND_THREADS"):
            env.pop(name, None)
    out = {}
    for method in methods:
        path = tmp / f"alone_{method}.json"
        command = [sys.executable, __file__, *base, "--methods", method, "--no-peak"]
        command += ["--json", str(path)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
        row = json.loads(path.read_text())["results"][0]
        out[method] = {k: row[k] for k in ("samples_per_s", "cpu_per_wall", "median_s")}
    return out


def model_macs(smoothed, target: str) -> float:
    """Multiply-accumulates per sample of the integer classifier (its convolutions and dense
    layers, as the build's kernels compute them, channel padding included)."""
    from tvm_intsmooth.pipeline.phases import fused_module
    from tvm_intsmooth.pipeline.tune import tunable_tasks
    from tvm_intsmooth.schedule.targets import resolve_target

    spec = resolve_target(target)
    tasks = tunable_tasks(fused_module(smoothed.mod, spec), spec)
    return sum(macs * int(task.weight) for task, macs in tasks) / smoothed.batch


def rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def table(rows: list[dict], reference: str) -> str:
    alone = any(r.get("alone") for r in rows)
    extra = " alone: samples/s | CPU/wall | speedup |" if alone else ""
    lines = [
        f"| method | samples/s | CPU/wall | % of int8 peak | {reference} speedup | "
        f"RSS added (MiB) | median s per run |{extra}",
        "|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|---:|" if alone else ""),
    ]
    for r in rows:
        speedup = f"{r['speedup']:.2f}x" if r.get("speedup") else "n/a"
        peak = f"{r['percent_of_int8_peak']:.1f}%" if r.get("percent_of_int8_peak") else "n/a"
        rss = f"{r['rss_added_mib']:,.0f}" if r.get("rss_added_mib") is not None else ""
        median = f"{r['median_s']:.3f}" if r.get("median_s") else ""
        ratio = f"{r['cpu_per_wall']:.2f}" if r.get("cpu_per_wall") else ""
        line = (
            f"| {r['method']} | {r['samples_per_s']:,.0f} | {ratio} | {peak} | {speedup} | "
            f"{rss} | {median} |"
        )
        if alone:
            a = r.get("alone")
            line += (
                f" {a['samples_per_s']:,.0f} | {a['cpu_per_wall']:.2f} | {a['speedup']:.2f}x |"
                if a
                else " | | |"
            )
        lines.append(line)
    return "\n".join(lines)


def time_certify(smoothed, images: np.ndarray, args, tmp: Path) -> dict:
    """Wall seconds of `intsmooth certify` (in this process) of the tuned artifact on
    ``args.certify`` images, n0 = 100, n = ``args.certify_n``."""
    from tvm_intsmooth.cli.main import main as intsmooth
    from tvm_intsmooth.runtime import save_artifact

    artifact = save_artifact(smoothed, tmp / "artifact", args.target)
    data = tmp / "certify_images.npz"
    np.savez(data, x=images[: args.certify], y=np.zeros(args.certify, np.int64))
    argv = ["certify", str(artifact), "--data", str(data), "--n", str(args.certify_n)]
    argv += ["--seed", "1", "-o", str(tmp / "certify.tsv")]
    start = time.perf_counter()
    if intsmooth(argv) != 0:
        raise RuntimeError("intsmooth certify failed")
    seconds = time.perf_counter() - start
    return {"images": args.certify, "n": args.certify_n, "seconds": seconds,
            "seconds_per_image": seconds / args.certify}  # fmt: skip


def chart(rows: list[dict], title: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.5 * len(rows) + 1.5))
    names = [r["method"] for r in rows][::-1]
    values = [r["samples_per_s"] for r in rows][::-1]
    colors = [
        "tab:green" if n.startswith("tvm-int") else "tab:red" if "peak" in n else "tab:gray"
        for n in names
    ]
    ax.barh(names, values, color=colors)
    ax.set_xscale("log")
    ax.set_xlabel("smoothed samples per second (log scale)")
    ax.set_title(title, fontsize=9)
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:,.0f}", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def prepare(args, tmp: Path):
    """The smoothed model, its MACs per sample, the images, and every method's runner (with
    the RSS each added, and the schedule lookups of the TVM integer builds)."""
    model, description = bench_common.resolve_model(args.model, tmp)
    shape = bench_common.onnx_input_shape(model)
    images = bench_common.load_images(shape)
    calib, image = images[: args.calibration], images[-1]
    if args.calib:
        from tvm_intsmooth.data import load_dataset

        calib, _ = load_dataset(args.calib, split="train", max_count=500)
    from tvm_intsmooth.pipeline.smooth import smooth

    smoothed = smooth(model, calib, args.sigma, batch=args.batch)
    lookups = {}

    def tvm_int(schedules):
        def make():
            run, lookups[schedules] = tvm_int_runner(smoothed, image, args, schedules)
            if schedules and lookups[schedules].used is None:
                raise LookupError(
                    f"no tuned schedule database for this model on {args.target} (key "
                    f"{lookups[schedules].key}): run `intsmooth tune` first"
                )
            return run

        return make

    builders = {
        "tvm-int-tuned": tvm_int("auto"),
        "tvm-int-untuned": tvm_int(None),
        "tvm-float32": lambda: tvm_float_runner(model, image, args),
        "tvm-float32-tuned": lambda: tvm_float_runner(model, image, args, tuned=True),
        "ort-float32": lambda: ort_runner(model, image, args),
        "ort-int8": lambda: ort_runner(
            ort_int8_model(model, calib, tmp / "int8.onnx", args.ort_int8_format), image, args
        ),
        "torch-float32": lambda: torch_runner(image, args, bench_common.architecture(model)),
    }
    runners, rss = {}, {}
    for name in args.methods:
        start, before = time.perf_counter(), rss_mib()
        try:
            runners[name] = builders[name]()
        except LookupError as err:
            print(f"left out {name}: {err}", file=sys.stderr)
            continue
        rss[name] = rss_mib() - before
        print(f"prepared {name} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return {
        "model": description,
        "shape": shape,
        "smoothed": smoothed,
        "images": images,
        "macs": model_macs(smoothed, args.target),
        "runners": runners,
        "rss": rss,
        "lookups": lookups,
    }


def result_rows(args, run: dict, times: dict, cpu: dict, peak, threads: int, alone: dict):
    """One row per method (and the int8 peak's), with speedups against the reference build."""
    macs = run["macs"]
    rows = []
    for name, values in times.items():
        median = statistics.median(values)
        rows.append(
            {
                "method": name,
                "samples_per_s": args.n / median,
                "median_s": median,
                "times_s": values,
                "cpu_per_wall": statistics.median(cpu[name]),
                "rss_added_mib": run["rss"][name],
                "alone": alone.get(name),
            }  # fmt: skip
        )
    gmacs = peak.int8(threads) if peak is not None else None
    # The vector peak (what "% of int8 peak" is against), and the matrix unit where there is one.
    for label, kernel, value in (
        ("int8 peak", peak and peak.int8_kernel, gmacs),
        ("int8 matrix peak", peak and peak.matrix_kernel, peak and peak.matrix(threads)),
    ):
        if value:
            rows.append(
                {
                    "method": f"{label} ({peak.instruction[kernel]})",
                    "samples_per_s": value * 1e9 / macs,
                    "gmacs": value,
                }  # fmt: skip
            )
    reference = "tvm-int-tuned" if "tvm-int-tuned" in times else "tvm-int-untuned"
    ref = next((r["samples_per_s"] for r in rows if r["method"] == reference), None)
    ref_alone = alone.get(reference, {}).get("samples_per_s")
    for r in rows:
        r["speedup"] = ref / r["samples_per_s"] if ref else None
        if r.get("alone") and ref_alone:
            r["alone"]["speedup"] = ref_alone / r["alone"]["samples_per_s"]
        if gmacs:
            r["percent_of_int8_peak"] = 100 * r["samples_per_s"] * macs / gmacs / 1e9
        r["ratios"] = {o["method"]: r["samples_per_s"] / o["samples_per_s"] for o in rows}
    return rows, reference, ref


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    bench_common.set_threads(args.threads)
    bench_common.settle_allocator()
    threads = bench_common.tvm_threads()
    with tempfile.TemporaryDirectory(prefix="bench_smoothing_") as tmp:
        run = prepare(args, Path(tmp))
        times, cpu = measure(run["runners"], args)
        peak = None
        if not args.no_peak:
            sys.path.insert(0, str(Path(__file__).parent))
            from peak import measure_peak

            peak = measure_peak(threads=[threads])
        certify = None
        if args.certify:
            certify = time_certify(run["smoothed"], run["images"], args, Path(tmp))
        alone = measure_alone(argv, list(run["runners"]), Path(tmp)) if args.alone else {}
    import resource

    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows, reference, ref = result_rows(args, run, times, cpu, peak, threads, alone)
    if certify and ref:
        certify["expected_s_per_image"] = (100 + certify["n"]) / ref
        certify["ratio_to_expected"] = (
            certify["seconds_per_image"] / certify["expected_s_per_image"]
        )
    machine = bench_common.machine_description()
    used = {str(k): v.summary() for k, v in run["lookups"].items()}
    thread_note = f"{args.threads} (set)" if args.threads else f"default (TVM {threads})"
    print(
        f"model: {run['model']}; input {run['shape']}; {run['macs'] / 1e6:.1f} MMAC per sample; "
        f"batch {args.batch}; threads {thread_note}; n {args.n} per run; median of "
        f"{args.repeats} after {args.warmup} warm-up; sigma {args.sigma}; ort-int8 format "
        f"{args.ort_int8_format}; target {args.target}; schedules {used}\n"
        f"machine: {machine['cpu']}, {machine['cores']} cores, ISA {machine['isa']}, load "
        f"average {', '.join(f'{x:.2f}' for x in machine['load_average'])} (at the end); "
        f"process peak RSS {peak_rss:,.0f} MiB\n"
    )
    print(table(rows, reference))
    if certify:
        print(
            f"\nintsmooth certify, tuned artifact, n0 100, n {certify['n']:,}: "
            f"{certify['seconds_per_image']:.1f} s per image ({certify['images']} images); "
            f"(n0 + n) x the per-sample time of {reference} above: "
            f"{certify.get('expected_s_per_image', float('nan')):.1f} s, ratio "
            f"{certify.get('ratio_to_expected', float('nan')):.2f}"
        )
    if args.json:
        config = {k: v for k, v in vars(args).items() if k not in ("json", "chart")}
        config["tvm_threads"] = threads
        result = {"model": run["model"], "config": config, "machine": machine,
                  "macs_per_sample": run["macs"], "schedules": used, "peak_rss_mib": peak_rss,
                  "results": rows, "certify": certify,
                  "peak": None if peak is None else peak.gmacs}  # fmt: skip
        Path(args.json).write_text(json.dumps(result, indent=1))
    if args.chart:
        load = ", ".join(f"{x:.1f}" for x in machine["load_average"])
        title = (f"{run['model']}, batch {args.batch}, threads {thread_note}\n{machine['cpu']}"
                 f" ({machine['isa']}), load {load}")  # fmt: skip
        chart(rows, title, args.chart)
    return 0


if __name__ == "__main__":
    sys.exit(main())
