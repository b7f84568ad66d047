"""Where the time of one call of the smoothed function goes.

Times, per call of B noisy samples: the whole compiled smoothed function (noise, network, votes);
the int16-input integer classifier alone with its symbolic batch; and the same classifier with
the batch bound to B, as it is inside the smoothed function. The difference between the first and
the last is the in-graph noise sampler and vote counting; the difference between the last two is
what a fixed batch changes in the default schedules.

    python benchmarks/graph_breakdown.py [--model M.onnx] [--batch 100] [--threads 2]
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
    machine_description,
    onnx_input_shape,
    resolve_model,
    set_threads,
)

IMAGES = {
    (1, 28, 28): ASSETS / "data" / "fashion_mnist_test500.npz",
    (3, 32, 32): ASSETS / "data" / "fashion_mnist32_test500.npz",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_model_argument(p)
    p.add_argument("--batch", type=int, default=100, help="noisy samples per call (default 100)")
    p.add_argument("--threads", type=int, default=2, help="TVM threads (default 2)")
    p.add_argument("--repeats", type=int, default=20, help="timed calls per variant (default 20)")
    p.add_argument("--sigma", type=float, default=0.25, help="noise level (default 0.25)")
    args = p.parse_args(argv)
    if min(args.batch, args.threads, args.repeats) < 1:
        p.error("--batch, --threads and --repeats must be positive")
    return args


def median_ms(func, inputs, repeats: int) -> float:
    func(*inputs)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func(*inputs)
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    set_threads(args.threads)
    import tvm
    from tvm import relax

    from tvm_intsmooth.schedule import build
    from tvm_intsmooth.smooth.api import smooth

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
    rows = {
        "smoothed function (noise + network + votes)": vm(smoothed.mod),
        "int16 classifier, symbolic batch": vm(classifier),
        f"int16 classifier, batch bound to {args.batch}": vm(bound),
    }
    print(f"{description}, batch {args.batch}, {args.threads} threads")
    print(machine_description())
    for name, func in rows.items():
        inputs = smoothed_inputs if name.startswith("smoothed") else [tvm.runtime.tensor(noisy)]
        print(f"{name:48s} {median_ms(func, inputs, args.repeats):9.1f} ms per call")


if __name__ == "__main__":
    main()
