"""Time an artifact's smoothed function on a device with TVM's time_evaluator.

The timed call is ``main`` on one full batch of noisy samples, as certification runs it. Its
cost does not depend on the pixels, the seed or the counter, so one fixed input is timed.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from tvm_intsmooth.remote.session import Device, device_report, load_artifact


@dataclass(frozen=True)
class BenchResult:
    """``repeat`` timings of ``calls`` batches each: per-batch seconds, one value per repeat."""

    device: dict
    where: str
    artifact: str
    target: str
    batch: int
    calls: int
    batch_seconds: tuple[float, ...]
    threads: int | None = None  # this machine's kernel threads (None: a remote device)

    @property
    def median_s(self) -> float:
        """Median seconds per batch over the repeats."""
        return float(np.median(self.batch_seconds))

    @property
    def p90_s(self) -> float:
        """90th percentile of the seconds per batch over the repeats."""
        return float(np.percentile(self.batch_seconds, 90))

    @property
    def samples_per_s(self) -> float:
        """Noisy samples per second at the median batch latency."""
        return self.batch / self.median_s

    @property
    def emulated(self) -> bool:
        """Whether the device reported an emulator (its timings mean nothing)."""
        return bool(self.device.get("emulator"))

    def summary(self) -> str:
        """The report printed by ``intsmooth bench``."""
        d = self.device
        lines = [
            f"device:     {d.get('name', 'unknown')} [{d.get('machine', 'unknown')}"
            + (f", LLVM cpu {d['llvm_cpu']}" if d.get("llvm_cpu") else "")
            + (f", {d['cores']} cores" if d.get("cores") else "")
            + f"] on {self.where}",
            f"artifact:   {self.artifact} (target {self.target}, batch {self.batch})",
            *([f"threads:    {self.threads}"] if self.threads is not None else []),
            f"measured:   {len(self.batch_seconds)} repeats of {self.calls} calls "
            f"({self.calls * self.batch} noisy samples each), TVM time_evaluator on the device",
            f"throughput: {self.samples_per_s:,.1f} samples/s",
            f"latency per batch of {self.batch}: median {self.median_s * 1e3:,.2f} ms, "
            f"p90 {self.p90_s * 1e3:,.2f} ms",
        ]
        if self.emulated:
            lines.append(
                f"note:       the device is emulated ({d['emulator']}): these numbers are "
                "meaningless for speed; the results (vote counts) are exact."
            )
        return "\n".join(lines)


def benchmark(
    artifact: str | os.PathLike,
    device: Device | None = None,
    *,
    n: int | None = None,
    repeat: int = 5,
    threads: int | None = None,
) -> BenchResult:
    """Time ``artifact`` on ``device`` (this machine by default).

    Args:
        n: noisy samples per repeat, rounded up to whole batches (default: 10 batches).
        repeat: timed repeats; the median and p90 are taken over them.
        threads: this machine's kernel threads (default: one per physical core).
    """
    from tvm_intsmooth import runtime
    from tvm_intsmooth.remote.rpc_listener import device_report as local_report

    device = device or Device()
    session = None if device.is_local else device.open()
    if session is None:
        clf = runtime.load_artifact(artifact, threads=threads)
    else:
        clf = load_artifact(artifact, session)
    report = local_report() if session is None else device_report(session)
    calls = 10 if n is None else max(1, math.ceil(n / clf.batch))
    pixels = np.random.default_rng(0).integers(0, 256, clf.input_shape, dtype=np.uint8)
    inputs = clf.batch_inputs(clf.tensor(clf.check_image(pixels)), 1, 0, 0, clf.batch)
    used = clf.threads if session is None else None  # (sizes this thread's pool)
    timer = clf.vm.time_evaluator("main", clf.device, number=calls, repeat=repeat)
    result = timer(*inputs)
    return BenchResult(
        device=report,
        where=str(device),
        artifact=str(artifact),
        target=str(clf.meta.get("target", "unknown")),
        batch=clf.batch,
        calls=calls,
        batch_seconds=tuple(float(s) for s in result.results),
        threads=used,
    )
