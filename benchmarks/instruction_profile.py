"""Where each kernel's time goes inside it: its multiply-accumulate loop, its padding copy, or
its epilogue (the requantization, residual sums, clamps), sampled with Linux ``perf``.

Builds the smoothed classifier with the shipped database, every kernel a function of its own
(as ``kernel_profile.py`` does), exports it as a shared library, calls it in a loop under
``perf record`` and maps every sample in the library to its kernel (``nm``) and instruction
(``objdump``). A kernel's address range
from its first to its last multiply-accumulate instruction (``vpdpbusd``, ``vpdpwssd``,
``vpmaddwd``, ``vpmaddubsw``, ``sdot``, ``smlal``...) is its inner loop; samples before it are
the padded-image copy and the setup, samples after it the epilogue. Next to each kernel: its
multiply-accumulate instructions and the vector instructions after the last of them, counted in
the assembly. Needs ``perf`` (linux-perf) with permission to sample this process::

    python benchmarks/instruction_profile.py [--model M.onnx] [--seconds 10] [--top 14]
"""

from __future__ import annotations

import argparse
import bisect
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MAC_MNEMONICS = ("vpdpbusd", "vpdpwssd", "vpmaddwd", "vpmaddubsw", "sdot", "udot", "smlal")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from bench_common import add_model_argument

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_model_argument(p)
    p.add_argument("--batch", type=int, default=100, help="noisy samples per call (default 100)")
    p.add_argument("--seconds", type=float, default=10.0, help="sampling time (default 10)")
    p.add_argument("--top", type=int, default=14, help="kernels listed (default 14)")
    p.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # internal: run the loop
    return p.parse_args(argv)


def build_library(model_arg: str | None, batch: int, out: Path) -> list:
    """Export the smoothed classifier (shipped database) to ``out``; its ``main`` arguments."""
    import numpy as np
    import tvm
    from bench_common import onnx_input_shape, resolve_model
    from graph_breakdown import IMAGES

    from tvm_intsmooth.pipeline.build import build
    from tvm_intsmooth.pipeline.smooth import smooth

    model, _ = resolve_model(model_arg, out.parent)
    with np.load(IMAGES[onnx_input_shape(model)]) as data:
        images = data["x"]
    smoothed = smooth(model, images[:64], 0.25, batch=batch)
    # Each kernel a function of its own, so that perf's samples map to kernels.
    executable = build(
        smoothed.mod, "host", require_integer_only=True, schedules="auto", fuse_samples=False
    )
    executable.export_library(str(out))
    words = [np.array([1, 2], np.int64), np.zeros(3, np.int64), np.array([batch], np.int64)]
    return [tvm.runtime.tensor(a) for a in (images[100:101], *words)]


def worker(args: argparse.Namespace) -> None:
    """Build, then call ``main`` for ``--seconds`` (perf samples this process)."""
    import tvm
    from tvm import relax

    inputs = build_library(args.model, args.batch, args.worker)
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(args.worker)), tvm.cpu())
    print("sampling", flush=True)
    end = time.perf_counter() + args.seconds
    while time.perf_counter() < end:
        vm["main"](*inputs)


def symbols(library: Path) -> tuple[list[int], list[str]]:
    """Start addresses (sorted) and names of the library's functions."""
    table = []
    for line in subprocess.run(["nm", str(library)], capture_output=True, text=True).stdout.split(
        "\n"
    ):
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tT":
            table.append((int(parts[0], 16), parts[2]))
    table.sort()
    return [a for a, _ in table], [n for _, n in table]


def instructions(library: Path) -> dict[str, list[tuple[int, str]]]:
    """Every function's (address, mnemonic) pairs, from ``objdump -d``."""
    out: dict[str, list[tuple[int, str]]] = collections.defaultdict(list)
    current = None
    dump = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(library)], text=True,
                          capture_output=True).stdout  # fmt: skip
    for line in dump.splitlines():
        head = re.match(r"^[0-9a-f]+ <(.+)>:", line)
        if head:
            current = head.group(1)
            continue
        insn = re.match(r"\s*([0-9a-f]+):\s+(\S+)", line)
        if insn and current:
            out[current].append((int(insn.group(1), 16), insn.group(2)))
    return out


def samples(data: Path, library: Path) -> dict[int, float]:
    """Percent of all samples at each address of ``library``."""
    report = subprocess.run(
        ["perf", "report", "-i", str(data), "--no-children", "--sort", "dso,sym",
         "--dsos", library.name, "--stdio"],
        capture_output=True, text=True,
    ).stdout  # fmt: skip
    out = {}
    for line in report.splitlines():
        found = re.match(r"\s*([0-9.]+)%.*?\[\.\]\s+(0x[0-9a-f]+)", line)
        if found:
            out[int(found.group(2), 16)] = float(found.group(1))
    return out


def _kernel_row(name: str, insns: list[tuple[int, str]]) -> dict:
    """A kernel's empty row: its multiply-accumulate address range and instruction counts."""
    macs = [a for a, m in insns if m.startswith(MAC_MNEMONICS)]
    last = macs[-1] if macs else None
    return {
        "kernel": name.removesuffix("_compute_"),
        "time": 0.0, "setup": 0.0, "loop": 0.0, "epilogue": 0.0,
        "mac_range": (macs[0], last) if macs else None,
        "mac_insns": len(macs),
        "epilogue_insns": sum(1 for a, m in insns if last and a > last and m.startswith("v")),
    }  # fmt: skip


def profile(data: Path, library: Path) -> list[dict]:
    """Per kernel: its share of the samples, split into setup (padding copy), the
    multiply-accumulate loop and the epilogue, with instruction counts."""
    starts, names = symbols(library)
    code = instructions(library)
    rows: dict[str, dict] = {}
    for address, pct in samples(data, library).items():
        name = names[bisect.bisect_right(starts, address) - 1]
        if not name.endswith("_compute_"):
            continue
        if name not in rows:
            rows[name] = _kernel_row(name, code.get(name, []))
        row = rows[name]
        row["time"] += pct
        macs = row["mac_range"]
        part = "loop" if macs is None or macs[0] <= address <= macs[1] else "setup"
        if macs is not None and address > macs[1]:
            part = "epilogue"
        row[part] += pct
    return sorted(rows.values(), key=lambda r: -r["time"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    if shutil.which("perf") is None:
        raise SystemExit("instruction_profile.py needs Linux perf (Debian: linux-perf)")
    with tempfile.TemporaryDirectory(prefix="intsmooth_perf_") as tmp:
        library, data = Path(tmp) / "smoothed.so", Path(tmp) / "perf.data"
        command = [sys.executable, __file__, "--worker", str(library),
                   "--seconds", str(args.seconds), "--batch", str(args.batch)]  # fmt: skip
        if args.model:
            command += ["--model", args.model]
        subprocess.run(["perf", "record", "-F", "4000", "-q", "-o", str(data), "--", *command],
                       check=True)  # fmt: skip
        rows = profile(data, library)
    total = sum(r["time"] for r in rows)  # the build's samples are not the library's
    for r in rows:
        for key in ("time", "setup", "loop", "epilogue"):
            r[key] *= 100 / total
    print("% of the smoothed function's time (its kernels' samples):")
    print("  time   setup   MAC loop  epilogue  MAC insns  epilogue vector insns  kernel")
    for r in rows[: args.top]:
        print(
            f"{r['time']:6.1f} {r['setup']:7.1f} {r['loop']:10.1f} {r['epilogue']:9.1f} "
            f"{r['mac_insns']:10d} {r['epilogue_insns']:22d}  {r['kernel'][:60]}"
        )
    sums = {k: sum(r[k] for r in rows if r["mac_insns"]) for k in ("setup", "loop", "epilogue")}
    print(
        f"convolutions: setup (padding copy) {sums['setup']:.1f}%, multiply-accumulate loops "
        f"{sums['loop']:.1f}%, epilogues {sums['epilogue']:.1f}%; the rest "
        f"{100 - sum(sums.values()):.1f}% (noise sampler, layout, votes)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
