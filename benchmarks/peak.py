"""The machine's multiply-accumulate peak: exact int8 dot products and fp32 FMA, in GMAC/s.

Each kernel of peak_kernels.c (compiled here with the system C compiler) keeps 12 independent
accumulator chains of one instruction busy on registers: ``vpdpbusd`` (AVX-512 VNNI, 64 MACs),
``vpmaddubsw + vpmaddwd`` (AVX2, 32 MACs), ``vfmadd231ps`` on zmm/ymm (16/8 MACs); on aarch64
``sdot`` (16), ``smull + smull2 + 2 sadalp`` (16), ``fmla`` (4). It runs on 1 thread and on as many
threads as the machine has physical cores, each thread its own copy. "int8 peak" is the best exact
int8 vector kernel this CPU has, the figure benchmarks report "% of int8 peak" against. Where the
CPU has Intel's AMX matrix unit (and Linux grants it), ``tdpbusd`` on 4 accumulator tiles (16,384
exact u8 x s8 MACs each) is measured too and reported beside it ("int8 matrix unit"), the unit
that x86-amx builds run their 3 x 3 convolutions on.

    python benchmarks/peak.py [--seconds 0.5] [--repeats 5] [--threads 1 2] [--json PATH]

``measure_peak()`` returns the same figures to other scripts.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

SOURCE = Path(__file__).with_name("peak_kernels.c")


@dataclass(frozen=True)
class Kernel:
    """One loop of peak_kernels.c."""

    name: str  # the C function
    arch: str  # x86_64 / aarch64
    features: frozenset[str]  # CPU features it needs (LLVM names, as host_features gives)
    macs: str  # the C constant holding its MACs per iteration
    kind: str  # int8 (exact) or fp32
    instruction: str  # its first word: the mnemonic issued once per instruction_macs MACs
    # (smull: once per 16, with its smull2 half)
    instruction_macs: int
    # A matrix unit (AMX) beside the vector units: reported beside the "int8 peak", which stays
    # the best vector instruction (the reference of issue 17's goals, and of every machine).
    matrix: bool = False


KERNELS = [
    Kernel("amx_u8s8", "x86_64", frozenset({"amx-tile", "amx-int8"}), "AMX_MACS", "int8",
           "tdpbusd tmm", 16384, matrix=True),
    Kernel("vnni_u8s8", "x86_64", frozenset({"avx512vnni", "avx512bw"}), "VNNI_MACS", "int8",
           "vpdpbusd zmm", 64),
    Kernel("avx2_u8s8", "x86_64", frozenset({"avx2"}), "AVX2_I8_MACS", "int8",
           "vpmaddubsw+vpmaddwd ymm", 32),
    Kernel("avx512_f32", "x86_64", frozenset({"avx512f"}), "AVX512_F32_MACS", "fp32",
           "vfmadd231ps zmm", 16),
    Kernel("avx2_f32", "x86_64", frozenset({"avx2", "fma"}), "AVX2_F32_MACS", "fp32",
           "vfmadd231ps ymm", 8),
    Kernel("sdot_s8s8", "aarch64", frozenset({"dotprod"}), "SDOT_MACS", "int8", "sdot", 16),
    Kernel("smull_s8s8", "aarch64", frozenset({"neon"}), "SMULL_MACS", "int8", "smull+sadalp", 16),
    Kernel("neon_f32", "aarch64", frozenset({"neon"}), "NEON_F32_MACS", "fp32", "fmla", 4),
]  # fmt: skip


@dataclass
class Peak:
    """Measured GMAC/s per kernel and thread count, and the best int8 and fp32 figures."""

    machine: str
    cores: int
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    gmacs: dict[str, dict[int, float]] = field(default_factory=dict)  # kernel -> threads -> GMAC/s
    instruction: dict[str, str] = field(default_factory=dict)
    int8_kernel: str | None = None  # the best exact int8 vector kernel (by 1-thread speed)
    matrix_kernel: str | None = None  # the int8 matrix-unit kernel, where the CPU has one
    fp32_kernel: str | None = None

    def int8(self, threads: int) -> float | None:
        """The exact int8 peak, GMAC/s, on ``threads`` threads."""
        return self.gmacs[self.int8_kernel].get(threads) if self.int8_kernel else None

    def matrix(self, threads: int) -> float | None:
        """The int8 matrix unit's peak (AMX), GMAC/s, on ``threads`` threads, or None."""
        return self.gmacs[self.matrix_kernel].get(threads) if self.matrix_kernel else None

    def fp32(self, threads: int) -> float | None:
        """The fp32 FMA peak, GMAC/s, on ``threads`` threads."""
        return self.gmacs[self.fp32_kernel].get(threads) if self.fp32_kernel else None


def available_kernels() -> list[Kernel]:
    """The kernels this CPU can run (its architecture and features)."""
    from tvm_intsmooth.schedule.targets import host_features

    arch, features = host_features()
    return [k for k in KERNELS if k.arch == arch and k.features <= features]


REFUSED = -(2**63)  # what a kernel returns where the OS does not grant its unit (AMX_REFUSED)


def runs(lib: ctypes.CDLL, kernel: Kernel) -> bool:
    """Whether ``kernel`` runs here (the OS grants the unit it needs: Linux hands out AMX's
    tile state only on request)."""
    fn, _ = bind(lib, kernel)
    return fn(0, *operands(kernel.kind)) != REFUSED


def compile_kernels(folder: Path) -> ctypes.CDLL:
    """peak_kernels.c as a shared library (``$CC``, default ``cc``, -O2)."""
    out = folder / "peak_kernels.so"
    cc = os.environ.get("CC", "cc")
    cmd = [cc, "-O2", "-shared", "-fPIC", "-o", str(out), str(SOURCE)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return ctypes.CDLL(str(out))


OPERAND = {"int8": 3, "fp32": 1.0}  # every operand byte / float (products: 9 and 1.0)


def operands(kind: str):
    """The two 64-byte operand buffers of a ``kind`` kernel (one buffer, passed twice)."""
    if kind == "int8":
        buf = (ctypes.c_uint8 * 64)(*[OPERAND[kind]] * 64)
    else:
        buf = (ctypes.c_float * 16)(*[OPERAND[kind]] * 16)
    return buf, buf


def bind(lib: ctypes.CDLL, kernel: Kernel):
    """The kernel's C function ``fn(iters, a, b) -> sum of accumulators`` and its MACs per
    iteration."""
    fn = getattr(lib, kernel.name)
    fn.restype = ctypes.c_int64
    fn.argtypes = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]
    return fn, ctypes.c_int.in_dll(lib, kernel.macs).value


def _timed(fn, iters: int, threads: int, args, clock: str = "wall") -> float:
    """Seconds for ``threads`` threads each running ``fn(iters)`` (started together): wall
    time, or (``clock="cpu"``) the longest CPU time of one thread, which other load on the
    machine does not stretch."""
    barrier = threading.Barrier(threads + 1)
    cpu: list[float] = []

    def work():
        barrier.wait()
        start = time.thread_time()
        fn(iters, *args)
        cpu.append(time.thread_time() - start)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in pool:
        t.join()
    return max(cpu) if clock == "cpu" else time.perf_counter() - start


def measure_kernel(
    lib, kernel: Kernel, threads: int, seconds=0.5, repeats=5, clock: str = "wall"
) -> float:
    """Best GMAC/s of ``repeats`` runs of about ``seconds`` each on ``threads`` threads
    (``clock``: see :func:`_timed`)."""
    fn, macs = bind(lib, kernel)
    args = operands(kernel.kind)
    iters = 1000
    while (elapsed := _timed(fn, iters, 1, args)) < 0.05:  # calibrate on one thread
        iters *= 4
    iters = max(1, int(iters * seconds / elapsed))
    best = min(_timed(fn, iters, threads, args, clock) for _ in range(repeats))
    return iters * macs * threads / best / 1e9


def measure_peak(
    threads: list[int] | None = None, seconds=0.5, repeats=5, clock: str = "wall"
) -> Peak:
    """Measure every kernel this CPU has on each thread count (default: 1 and the physical
    core count); the best exact int8 and fp32 kernels by their 1-thread speed. ``clock="cpu"``
    times each thread's CPU time (robust to other load; see :func:`_timed`)."""
    from tvm_intsmooth.schedule.targets import host_num_cores

    cores = host_num_cores()
    threads = threads or sorted({1, cores})
    peak = Peak(f"{platform.processor() or platform.machine()} {_cpu_name()}", cores,
                os.getloadavg())  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        lib = compile_kernels(Path(tmp))
        for kernel in filter(lambda k: runs(lib, k), available_kernels()):
            peak.instruction[kernel.name] = kernel.instruction
            peak.gmacs[kernel.name] = {
                t: measure_kernel(lib, kernel, t, seconds, repeats, clock) for t in threads
            }
    peak.load_after = os.getloadavg()
    for kind in ("int8", "fp32"):
        names = [
            k.name for k in KERNELS if k.kind == kind and not k.matrix and k.name in peak.gmacs
        ]
        if names:
            best = max(names, key=lambda n: peak.gmacs[n][min(threads)])
            setattr(peak, f"{kind}_kernel", best)
    peak.matrix_kernel = next((k.name for k in KERNELS if k.matrix and k.name in peak.gmacs), None)
    return peak


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def format_table(peak: Peak) -> str:
    """A markdown table: one row per kernel, one column per thread count."""
    threads = sorted({t for row in peak.gmacs.values() for t in row})
    head = "| kernel | instruction | " + " | ".join(f"{t} thread(s), GMAC/s" for t in threads)
    lines = [head + " |", "|---|---|" + "---:|" * len(threads)]
    for name, row in peak.gmacs.items():
        mark = " (int8 peak)" if name == peak.int8_kernel else ""
        mark += " (fp32 peak)" if name == peak.fp32_kernel else ""
        mark += " (int8 matrix unit)" if name == peak.matrix_kernel else ""
        cells = " | ".join(f"{row[t]:,.0f}" for t in threads)
        lines.append(f"| {name}{mark} | {peak.instruction[name]} | {cells} |")
    load = ", ".join(f"{x:.2f}" for x in peak.load_before)
    lines.append(f"\n{peak.machine}, {peak.cores} physical cores; load average {load} before")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, nargs="+", help="thread counts (default: 1 and cores)")
    p.add_argument("--seconds", type=float, default=0.5, help="length of one timed run")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per figure (best kept)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    peak = measure_peak(args.threads, args.seconds, args.repeats)
    print(format_table(peak))
    if args.json:
        args.json.write_text(json.dumps(asdict(peak), indent=1))


if __name__ == "__main__":
    main()
