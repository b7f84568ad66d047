"""Shared pieces of the benchmark scripts: the model to measure, its images, thread settings."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "tvm_intsmooth" / "assets"
# The bundled ResNet-20 (trained by /work/runs/train_resnet.sh); until it exists, an untrained
# ResNet-20 of the same architecture stands in: speed and memory do not depend on the weights.
DEFAULT_MODEL = ASSETS / "models" / "fashion_mnist32_resnet20_sigma025.onnx"
IMAGES = ASSETS / "data" / "fashion_mnist32_test500.npz"


def add_model_argument(p) -> None:
    """The --model option shared by the benchmark scripts."""
    p.add_argument(
        "--model",
        help=f"ONNX classifier (default: {DEFAULT_MODEL.name}, "
        "or an untrained ResNet-20 while that does not exist)",
    )


THREAD_VARIABLES = ("TVM_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def add_threads_argument(p) -> None:
    """The --threads option: by default none is set, so each runtime runs as a user gets it."""
    p.add_argument(
        "--threads",
        type=int,
        help="threads of every runtime (sets the thread variables); default: as users run it, "
        "no variable set (TVM: one thread per physical core, set by tvm_intsmooth; ONNX "
        "Runtime and PyTorch: their own defaults)",
    )


def set_threads(threads: int | None) -> None:
    """Fix the thread count of every runtime (None: leave every default alone, and refuse a
    thread variable left in the environment, so that figures are what users get); call before
    importing tvm_intsmooth, tvm, torch or onnxruntime."""
    if threads is None:
        stale = [name for name in THREAD_VARIABLES if name in os.environ]
        if stale:
            raise SystemExit(
                f"{', '.join(stale)} set in the environment: unset them to measure the default "
                "user path, or pass --threads N"
            )
        return
    if threads < 1:
        raise SystemExit(f"--threads must be positive, got {threads}")
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)


# One block freed below glibc's largest dynamic mmap threshold (32 MiB on 64-bit): see
# settle_allocator.
SETTLING_BLOCK = 24 << 20


def settle_allocator() -> None:
    """Put the C allocator in the state of any process that once freed a large block, so that
    every method runs with it, in the benchmark's process and in each ``--alone`` one.

    glibc serves blocks above its mmap threshold (128 KiB at start) with ``mmap`` and unmaps
    them when freed; freeing one raises the threshold to its size. Before that, PyTorch eager
    faults in every batch's activations anew (6.5 MB each for the ResNet-20 at batch 100): on
    the benchmark machines 1.4x-2.2x slower than after it. A process that compiled a TVM
    build is past it, a fresh one is not, so without this step the interleaved and the alone
    PyTorch figures measure two different peers. The faster one is the fair peer."""
    block = np.empty(SETTLING_BLOCK, np.uint8)
    del block


def tvm_threads() -> int:
    """The thread count of TVM's pool in this process (what tvm_intsmooth set, or the
    variable)."""
    import tvm

    import tvm_intsmooth  # noqa: F401  (sizes TVM's pool)

    return int(tvm.runtime.num_threads())


class CpuWall:
    """CPU time of the whole process over wall time, for one timed region (``with``): 2.0 on
    two busy cores, 1.0 on one; threads of another runtime spinning count too."""

    def __enter__(self):
        import time

        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        import time

        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu
        return False

    @property
    def ratio(self) -> float:
        return self.cpu / self.wall if self.wall else 0.0


def load_images(shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Bundled Fashion-MNIST test images (uint8): those of ``shape`` (1 x 28 x 28, or 3 x 32 x
    32 as the ResNet-20 takes them), by default the 3 x 32 x 32 ones."""
    for path in (IMAGES, *sorted((ASSETS / "data").glob("*.npz"))):
        with np.load(path) as data:
            if shape is None or tuple(data["x"].shape[1:]) == tuple(shape):
                return data["x"]
    raise SystemExit(f"no bundled images of shape {shape} in {ASSETS / 'data'}")


def architecture(model: Path) -> str:
    """The project architecture (``cnn``, ``resnet20``) of a bundled model, by its manifest
    entry; ``resnet20`` for other files."""
    import json

    manifest = json.loads((ASSETS / "models" / "manifest.json").read_text())
    kinds = {m["file"]: m["model"] for m in manifest["models"]}
    return kinds.get(Path(model).name, "resnet20")


def export_untrained_resnet20(path: Path, input_shape: tuple[int, int, int]) -> Path:
    """Write an untrained ResNet-20 (project architecture, fixed seed) as ONNX to ``path``."""
    import torch

    from tvm_intsmooth.train.export import export_onnx
    from tvm_intsmooth.train.models import build_model

    torch.manual_seed(0)
    channels = input_shape[0]
    model = build_model("resnet20", input_shape, 10, [0.3] * channels, [0.35] * channels)
    return export_onnx(model, input_shape, path, {"note": "untrained, for speed measurements"})


def resolve_model(model: str | None, workdir: Path) -> tuple[Path, str]:
    """The ONNX file to measure and a description of it (exporting a stand-in if needed)."""
    if model is not None:
        path = Path(model)
        if not path.is_file():
            raise SystemExit(f"--model {path}: no such file")
        return path, path.name
    if DEFAULT_MODEL.is_file():
        return DEFAULT_MODEL, DEFAULT_MODEL.name
    shape = tuple(load_images().shape[1:])
    path = export_untrained_resnet20(workdir / "resnet20_untrained.onnx", shape)
    return path, "ResNet-20, untrained stand-in (bundled model not trained yet)"


def onnx_input_shape(path: Path) -> tuple[int, ...]:
    """C, H, W of the ONNX model's first input."""
    import onnx

    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    return tuple(int(d.dim_value) for d in dims[1:])


def machine_description() -> dict:
    """CPU model, core count and load, to print next to the figures."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from tvm_intsmooth.schedule.targets import host_target_spec

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "isa": host_target_spec().resolved_name,
        "load_average": list(os.getloadavg()),
    }


FLOAT_SCHEDULES = Path(__file__).resolve().parent / "float_schedules"


def float_module(model: Path, batch: int):
    """The float ONNX model as TVM imports it, with its batch bound to ``batch`` (tuned
    schedules are made for static shapes)."""
    from tvm import relax

    from tvm_intsmooth.importer import import_onnx

    imported = import_onnx(model)
    return relax.transform.BindSymbolicVars({"batch": batch})(imported.mod), imported


def float_database(mod, target: str) -> tuple[Path, str]:
    """Where ``benchmarks/tune_float.py`` keeps the float module's tuned database for
    ``target`` (``float_schedules/<target>/<key>``, keyed like the project's own databases),
    and the target's resolved name."""
    from tvm_intsmooth.pipeline.phases import fused_module
    from tvm_intsmooth.schedule.database import workload_key
    from tvm_intsmooth.schedule.targets import resolve_target

    spec = resolve_target(target)
    key = workload_key(fused_module(mod, spec))
    return FLOAT_SCHEDULES / spec.resolved_name / key, spec.resolved_name
