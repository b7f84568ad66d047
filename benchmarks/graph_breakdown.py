"""Where the time of one call of the smoothed function goes.

Times, per call of B noisy samples: the whole compiled smoothed function (noise, network, votes);
the int16-input integer classifier alone with its symbolic batch; and the same classifier with
the batch bound to B, as it is inside the smoothed function. The difference between the first and
the last is the in-graph noise sampler and vote counting; the difference between the last two is
what a fixed batch changes in the default schedules.

    python benchmarks/graph_breakdown.py [--model M.onnx] [--batch 100] [--threads N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_common import (
    ASSETS,
    add_model_argument,
    add_threads_argument,
    machine_description,
    onnx_input_shape,
    resolve_model,
    set_threads,
    tvm_threads,
)

IMAGES = {
    (1, 28, 28): ASSETS / "data" / "fashion_mnist_test500.npz",
    (3, 32, 32): ASSETS / "data" / "fashion_mnist32_test500.npz",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_model_argument(p)
    p.add_argument("--batch", type=int, default=100, help="noisy samples per call (default 100)")
    add_threads_argument(p)
    p.add_argument("--repeats", type=int, default=20, help="timed calls per variant (default 20)")
    p.add_argument("--sigma", type=float, default=0.25, help="noise level (default 0.25)")
    args = p.parse_args(argv)
    if min(args.batch, args.repeats) < 1:
        p.error("--batch and --repeats must be positive")
    return args


def interleaved_median_ms(calls: dict, repeats: int) -> dict[str, float]:
    """Median ms per call of each variant, timed in turn (A, B, C, A, B, C, ...), so that the
    load of a shared machine drifts over all of them alike."""
    for func, inputs in calls.values():
        func(*inputs)  # warm-up
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, (func, inputs) in calls.items():
            start = time.perf_counter()
            func(*inputs)
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * float(np.median(t)) for name, t in times.items()}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    set_threads(args.threads)
    threads = tvm_threads()
    import tvm
    from tvm import relax

    from tvm_intsmooth.pipeline.build import build
    from tvm_intsmooth.pipeline.smooth import smooth

    with tempfile.TemporaryDirectory() as workdir:
        model, description = resolve_model(args.model, Path(workdir))
        shape = onnx_input_shape(model)
        if shape not in IMAGES:
            raise SystemExit(f"--model {model}: no bundled images of shape {shape}")
        with np.load(IMAGES[shape]) as data:
            images = data["x"]
        smoothed = smooth(model, images[:64], args.sigma, batch=args.batch)

    def vm(mod):
        return relax.VirtualMachine(build(mod, "host"), tvm.cpu())["main"]

    words = [np.array([1, 2], np.int64), np.zeros(3, np.int64), np.array([args.batch], np.int64)]
    smoothed_inputs = [tvm.runtime.tensor(a) for a in (images[:1], *words)]
    rng = np.random.default_rng(0)
    noisy = rng.integers(-200, 456, (args.batch, *shape)).astype(np.int16)
    classifier = smoothed.quantized.mod
    bound = relax.transform.BindSymbolicVars({"batch": args.batch})(classifier)
    batch_input = [tvm.runtime.tensor(noisy)]
    calls = {
        "smoothed function (noise + network + votes)": (vm(smoothed.mod), smoothed_inputs),
        "int16 classifier, symbolic batch": (vm(classifier), batch_input),
        f"int16 classifier, batch bound to {args.batch}": (vm(bound), batch_input),
    }
    print(f"{description}, batch {args.batch}, {threads} threads")
    print(machine_description())
    for name, ms in interleaved_median_ms(calls, args.repeats).items():
        print(f"{name:48s} {ms:9.1f} ms per call")


if __name__ == "__main__":
    main()
