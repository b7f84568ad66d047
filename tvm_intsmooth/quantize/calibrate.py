"""Calibration: the activation ranges of the float model on representative inputs.

Kept apart from the graph rewrite (as ONNX Runtime's quantization tool does): ``collect_ranges``
runs the float module, instrumented to return every float intermediate, over a calibration set and
records max |value| per Relax variable; ``QuantizeToInteger`` only reads that table.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import tvm
from tvm import relax

from ..schedule.build import build
from .graph import dataflow_bindings, replace_function


class CalibrationReader:
    """Batches of integer pixel images (uint8, N x C x H x W) for calibration."""

    def __init__(self, images: np.ndarray, batch_size: int = 64):
        self.images = images
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[np.ndarray]:
        for start in range(0, len(self.images), self.batch_size):
            yield self.images[start : start + self.batch_size]


def instrument(func: relax.Function) -> tuple[relax.Function, list[str]]:
    """The function made to return all its float intermediates (a tuple), and their names."""
    block = func.body.blocks[0]
    taps = [
        var
        for var, _ in dataflow_bindings(func)
        if isinstance(var.ty, relax.TensorType) and "float" in str(var.ty.dtype)
    ]
    out = relax.Var("calibration_taps", relax.TupleType([v.ty for v in taps]))
    bindings = [*block.bindings, relax.VarBinding(out, relax.Tuple(taps))]
    body = relax.SeqExpr([relax.DataflowBlock(bindings)], out)
    return relax.Function(func.params, body, out.ty, attrs=func.attrs), [v.name for v in taps]


def collect_ranges(
    mod: tvm.IRModule,
    reader: Iterable[np.ndarray],
    input_scale: float = 1.0 / 255.0,
    target="host",
) -> dict[str, float]:
    """Max |value| of every float intermediate of ``mod["main"]`` over the calibration batches."""
    func, names = instrument(mod["main"])
    vm = relax.VirtualMachine(build(replace_function(mod, "main", func), target), tvm.cpu())
    ranges = dict.fromkeys(names, 0.0)
    for images in reader:
        x = tvm.runtime.tensor(np.asarray(images, np.float32) * np.float32(input_scale))
        for name, value in zip(names, vm["main"](x), strict=True):
            ranges[name] = max(ranges[name], float(np.abs(value.numpy()).max()))
    return ranges
