"""Running a compiled classifier (float or integer) over a batch of images on the host."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from tvm_intsmooth.pipeline.build import build


class CompiledClassifier:
    """A Relax classifier module compiled for the host, evaluated in batches.

    Args:
        mod: a module whose ``main`` maps a batch of inputs to logits.
        target: target name/dict/spec (the host by default).
    """

    def __init__(self, mod: tvm.IRModule, target="host"):
        self.vm = relax.VirtualMachine(build(mod, target), tvm.cpu())

    def logits(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Logits for every row of ``x``, computed ``batch_size`` rows at a time."""
        parts = [
            self.vm["main"](tvm.runtime.tensor(np.ascontiguousarray(x[i : i + batch_size]))).numpy()
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(parts)


def float_inputs(images: np.ndarray, input_scale: float = 1.0 / 255.0) -> np.ndarray:
    """The float model's input for integer pixel images (pixel q stands for q * input_scale)."""
    return images.astype(np.float32) * np.float32(input_scale)
