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

All run in one process with the same batch size and thread count; repeats are interleaved
(one run of every method per round) so that a change in machine load hits all of them alike;
the figure is the median over rounds after warm-up rounds. Beside samples/s the table gives the
share of the machine's exact int8 multiply-accumulate peak (``benchmarks/peak.py``, measured in
the same process, with the model's MACs per sample), the ratio to every other method, and the
resident memory each method added when it was prepared. ``--certify K`` also times
``intsmooth certify`` (n0 = 100, n = ``--certify-n``) of the tuned artifact on K images.
Example::

    python benchmarks/bench_smoothing.py --batch 100 --threads 2 --n 1000 --repeats 5 \
        --certify 3 --json resnet20.json --chart smoothing_speed.png
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import bench_common
import numpy as np

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
    p.add_argument("--threads", type=int, default=2, help="threads of every runtime (default 2)")
    p.add_argument("--n", type=int, default=1000, help="samples per timed run (default 1000)")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
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
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument("--chart", metavar="PNG", help="also draw a bar chart of samples/s to PNG")
    args = p.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown:
        p.error(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    if min(args.batch, args.threads, args.n, args.repeats) < 1 or args.warmup < 0:
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


def measure(runners: dict[str, Runner], args) -> dict[str, list[float]]:
    """Seconds per run of ``args.n`` samples, rounds interleaved over the methods."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    for round_index in range(args.warmup + args.repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            counts = run(args.n, round_index)
            elapsed = time.perf_counter() - start
            if int(np.sum(counts)) != args.n:
                raise RuntimeError(f"{name}: {np.sum(counts)} votes for {args.n} samples")
            if round_index >= args.warmup:
                times[name].append(elapsed)
    return times


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
    lines = [
        f"| method | samples/s | % of int8 peak | {reference} speedup | RSS added (MiB) | "
        "median s per run |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        speedup = f"{r['speedup']:.2f}x" if r.get("speedup") else "n/a"
        peak = f"{r['percent_of_int8_peak']:.1f}%" if r.get("percent_of_int8_peak") else "n/a"
        rss = f"{r['rss_added_mib']:,.0f}" if r.get("rss_added_mib") is not None else ""
        median = f"{r['median_s']:.3f}" if r.get("median_s") else ""
        lines.append(
            f"| {r['method']} | {r['samples_per_s']:,.0f} | {peak} | {speedup} | {rss} | {median} |"
        )
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench_common.set_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_smoothing_") as tmp:
        model, description = bench_common.resolve_model(args.model, Path(tmp))
        shape = bench_common.onnx_input_shape(model)
        images = bench_common.load_images(shape)
        calib, image = images[: args.calibration], images[-1]
        if args.calib:
            from tvm_intsmooth.data import load_dataset

            calib, _ = load_dataset(args.calib, split="train", max_count=500)
        from tvm_intsmooth.pipeline.smooth import smooth

        smoothed = smooth(model, calib, args.sigma, batch=args.batch)
        macs = model_macs(smoothed, args.target)
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
                ort_int8_model(model, calib, Path(tmp) / "int8.onnx", args.ort_int8_format),
                image,
                args,
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
        times = measure(runners, args)
        peak = None
        if not args.no_peak:
            sys.path.insert(0, str(Path(__file__).parent))
            from peak import measure_peak

            peak = measure_peak(threads=[args.threads])
        certify = time_certify(smoothed, images, args, Path(tmp)) if args.certify else None
    import resource

    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = []
    for name, values in times.items():
        median = statistics.median(values)
        rows.append(
            {
                "method": name,
                "samples_per_s": args.n / median,
                "median_s": median,
                "times_s": values,
                "rss_added_mib": rss[name],
            }  # fmt: skip
        )
    if peak is not None and peak.int8(args.threads):
        gmacs = peak.int8(args.threads)
        rows.append(
            {
                "method": f"int8 peak ({peak.instruction[peak.int8_kernel]})",
                "samples_per_s": gmacs * 1e9 / macs,
                "gmacs": gmacs,
            }  # fmt: skip
        )
    reference = "tvm-int-tuned" if "tvm-int-tuned" in times else "tvm-int-untuned"
    ref = next((r["samples_per_s"] for r in rows if r["method"] == reference), None)
    for r in rows:
        r["speedup"] = ref / r["samples_per_s"] if ref else None
        if peak is not None and peak.int8(args.threads):
            r["percent_of_int8_peak"] = (
                100 * r["samples_per_s"] * macs / peak.int8(args.threads) / 1e9
            )
        r["ratios"] = {o["method"]: r["samples_per_s"] / o["samples_per_s"] for o in rows}
    machine = bench_common.machine_description()
    used = {str(k): v.summary() for k, v in lookups.items()}
    print(
        f"model: {description}; input {shape}; {macs / 1e6:.1f} MMAC per sample; batch "
        f"{args.batch}; threads {args.threads}; n {args.n} per run; median of {args.repeats} "
        f"after {args.warmup} warm-up; sigma {args.sigma}; ort-int8 format "
        f"{args.ort_int8_format}; target {args.target}; schedules {used}\n"
        f"machine: {machine['cpu']}, {machine['cores']} cores, ISA {machine['isa']}, load "
        f"average {', '.join(f'{x:.2f}' for x in machine['load_average'])} (at the end); "
        f"process peak RSS {peak_rss:,.0f} MiB\n"
    )
    print(table(rows, reference))
    if certify:
        print(
            f"\nintsmooth certify, tuned artifact, n0 100, n {certify['n']:,}: "
            f"{certify['seconds_per_image']:.1f} s per image ({certify['images']} images)"
        )
    if args.json:
        config = {k: v for k, v in vars(args).items() if k not in ("json", "chart")}
        result = {"model": description, "config": config, "machine": machine,
                  "macs_per_sample": macs, "schedules": used, "peak_rss_mib": peak_rss,
                  "results": rows, "certify": certify,
                  "peak": None if peak is None else peak.gmacs}  # fmt: skip
        Path(args.json).write_text(json.dumps(result, indent=1))
    if args.chart:
        load = ", ".join(f"{x:.1f}" for x in machine["load_average"])
        title = (f"{description}, batch {args.batch}, {args.threads} threads\n{machine['cpu']}"
                 f" ({machine['isa']}), load {load}")  # fmt: skip
        chart(rows, title, args.chart)
    return 0


if __name__ == "__main__":
    sys.exit(main())
