"""The smoothing pipeline, registered by name, with an optional IR dump between phases."""

from __future__ import annotations

import os
from pathlib import Path

import tvm

from .errors import IntSmoothError
from .smoothing.count_votes import CountVotes
from .smoothing.inject_integer_noise import InjectIntegerNoise
from .smoothing.noise_table import NoiseTable

PIPELINES = ("intsmooth_smoothing",)


def _dump(folder: Path, index: int, name: str) -> tvm.transform.Pass:
    @tvm.transform.module_pass(opt_level=0, name=f"DumpIR_{name}")
    def dump(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{index:02d}_{name}.py").write_text(mod.script(show_meta=False))
        return mod

    return dump


def smoothing_pipeline(
    sigma: float,
    batch: int,
    *,
    clip: str = "none",
    bits: int = 64,
    dump_ir: str | os.PathLike | None = None,
) -> tuple[tvm.transform.Pass, NoiseTable]:
    """InjectIntegerNoise + CountVotes as one pass for an integer int16-input classifier.

    Returns the pass and the noise table it draws from (its TV bound feeds the certificate).
    """
    noise = InjectIntegerNoise(sigma, batch, clip=clip, bits=bits)
    phases = [("inject_integer_noise", noise), ("count_votes", CountVotes())]
    passes = []
    for i, (name, phase) in enumerate(phases):
        passes.append(phase)
        if dump_ir is not None:
            passes.append(_dump(Path(dump_ir), i, name))
    return tvm.transform.Sequential(passes, name="intsmooth_smoothing"), noise.table


def get_pipeline(name: str, **kwargs) -> tuple[tvm.transform.Pass, NoiseTable]:
    """A registered pipeline by name (see ``PIPELINES``)."""
    if name != "intsmooth_smoothing":
        raise IntSmoothError(f"unknown pipeline {name!r}; known: {', '.join(PIPELINES)}")
    return smoothing_pipeline(**kwargs)
