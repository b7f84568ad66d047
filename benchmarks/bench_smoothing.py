"""Smoothed samples per second: TVM integer smoothing against float and int8 baselines.

Every method draws ``--n`` noisy copies of one image in batches of ``--batch``, runs the
classifier on them and counts the argmax votes:

- tvm-int: ``SmoothedClassifier.counts()`` of the integer smoothed model, default schedules
  (noise, clipping, classifier and vote counting all inside the compiled graph);
- ort-float32: ONNX Runtime on the float model, numpy Gaussian noise added to the batch;
- ort-int8: ONNX Runtime on the same model quantized by ``onnxruntime.quantization.
  quantize_static`` (per-channel int8 weights, uint8 activations, calibrated on a few images),
  numpy Gaussian noise;
- torch-float32: PyTorch eager on the project's ResNet-20 architecture, ``torch.randn`` noise
  (its weights are its own: speed does not depend on them).

All run in one process with the same batch size and thread count; repeats are interleaved
(one run of every method per round) so that a change in machine load hits all of them alike;
the figure is the median over rounds after warm-up rounds. Example::

    python benchmarks/bench_smoothing.py --batch 100 --threads 2 --n 1000 --repeats 5
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

METHODS = ("tvm-int", "ort-float32", "ort-int8", "torch-float32")
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
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
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


def tvm_int_runner(model: Path, calib: np.ndarray, image: np.ndarray, args) -> Runner:
    from tvm_intsmooth.runtime import SmoothedClassifier
    from tvm_intsmooth.smoothing.api import smooth

    classifier = SmoothedClassifier.from_model(smooth(model, calib, args.sigma, batch=args.batch))
    return lambda n, seed: classifier.counts(image, n, seed=seed, progress=False)


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
    base = np.broadcast_to(image.astype(np.float32) / 255.0, (args.batch, *image.shape))
    classes = session.get_outputs()[0].shape[-1]

    def run(n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        counts = np.zeros(classes, np.int64)
        for _ in range(n // args.batch):
            noise = rng.standard_normal(base.shape, dtype=np.float32)
            noise *= np.float32(args.sigma)
            logits = session.run(None, {name: base + noise})[0]
            counts += np.bincount(logits.argmax(axis=1), minlength=classes)
        return counts

    return run


def torch_runner(image: np.ndarray, args) -> Runner:
    import torch

    from tvm_intsmooth.train.models import build_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    channels = image.shape[0]
    model = build_model("resnet20", image.shape, 10, [0.3] * channels, [0.35] * channels).eval()
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


def table(rows: list[dict]) -> str:
    lines = [
        "| method | samples/s | relative to TVM int | median s per run |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        rel = f"{r['relative_to_tvm_int']:.2f}x" if r["relative_to_tvm_int"] else "n/a"
        lines.append(f"| {r['method']} | {r['samples_per_s']:,.0f} | {rel} | {r['median_s']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench_common.set_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_smoothing_") as tmp:
        model, description = bench_common.resolve_model(args.model, Path(tmp))
        images = bench_common.load_images()
        shape = bench_common.onnx_input_shape(model)
        if tuple(images.shape[1:]) != shape:
            raise SystemExit(f"the model takes {shape}, the bundled images are {images.shape[1:]}")
        calib, image = images[: args.calibration], images[-1]
        builders = {
            "tvm-int": lambda: tvm_int_runner(model, calib, image, args),
            "ort-float32": lambda: ort_runner(model, image, args),
            "ort-int8": lambda: ort_runner(
                ort_int8_model(model, calib, Path(tmp) / "int8.onnx", args.ort_int8_format),
                image,
                args,
            ),
            "torch-float32": lambda: torch_runner(image, args),
        }
        runners = {}
        for name in args.methods:
            start = time.perf_counter()
            runners[name] = builders[name]()
            print(f"prepared {name} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        times = measure(runners, args)
    rows = []
    reference = statistics.median(times["tvm-int"]) if "tvm-int" in times else None
    for name, values in times.items():
        median = statistics.median(values)
        rows.append(
            {
                "method": name,
                "samples_per_s": args.n / median,
                "relative_to_tvm_int": reference / median if reference else None,
                "median_s": median,
                "times_s": values,
            }
        )
    machine = bench_common.machine_description()
    print(
        f"model: {description}; input {shape}; batch {args.batch}; threads {args.threads}; "
        f"n {args.n} per run; median of {args.repeats} after {args.warmup} warm-up; "
        f"sigma {args.sigma}; ort-int8 format {args.ort_int8_format}\n"
        f"machine: {machine['cpu']}, {machine['cores']} cores, load average "
        f"{', '.join(f'{x:.2f}' for x in machine['load_average'])} (at the end)\n"
    )
    print(table(rows))
    if args.json:
        config = {k: v for k, v in vars(args).items() if k != "json"}
        result = {"model": description, "config": config, "machine": machine, "results": rows}
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
