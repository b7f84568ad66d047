"""The phases of the intsmooth compiler, in order: the one place that lists them.

Every entry point takes its phases from here: :func:`~tvm_intsmooth.smooth`,
:func:`~tvm_intsmooth.build`, tuning's task extraction (:func:`fused_module`), the benchmarks and
the registered Relax pipeline ``"intsmooth"``. With ``dump_ir=DIR`` every entry point writes the
IR after each phase it runs to ``DIR/NN_<phase>.py``, numbered by the phase's place in
:data:`PHASES`, so the same phase has the same file name whoever ran it.

=================== ========================================== ===================================
phase               passes                                     hands on
=================== ========================================== ===================================
float               (the imported module, before any pass)     float Relax, pixels / 255 in
canonicalize        UnwrapSingleOutput, FoldConstant,          the forms QuantizeToInteger reads:
                    CanonicalizeClip, FoldBatchNorm,           clips, no batch_norm, non-negative
                    FoldPadding, CanonicalizePRelu,            axes, global pooling as a mean,
                    CanonicalizeReductions, SymbolicBatch,     batch ``batch``, logits out
                    DropMonotoneHead, DCE
quantize_to_integer QuantizeToInteger (calibrated ranges in)   integer-only Relax, int pixels in
inject_integer_noise InjectIntegerNoise                        (pixels, seed, counter, valid)
count_votes         CountVotes                                 -> int32 votes per class
artifact_facts      AddArtifactFacts                           + ``intsmooth_facts()``
blocked_layout      TVM's library dispatch, ConvertToBlockedInt8, NCHW16c int8 convolutions,
                    RequantizeInt32, ScalarConstantsAsTensors  int32 requantization, [1]-tensor
                                                               requantization constants
legalize            TVM's CPU legalization and operator fusion fused PrimFuncs (tuning's tasks)
tuned_schedules     ApplyTunedDatabase                         tuned PrimFuncs marked scheduled
kernel_schedules    ScheduleBlockedKernels, ParallelizeOuterLoops every PrimFunc scheduled
sample_loops        FuseSampleLoops, DropRepeatedTileConfigs   runs of per-sample kernels as one
                                                               kernel, one parallel sample loop
lower               TVM's dataflow lowering and finalization   VM-ready Relax + TIR
=================== ========================================== ===================================

Calibration is not a phase: it runs the float model on images, before the passes, and its result
(:class:`~tvm_intsmooth.pipeline.calibrate.Calibration`) is an input of ``quantize_to_integer``.
It runs on the canonicalized module (its ranges are keyed by that module's variable names), so
``canonicalize`` runs once, first, for calibration and quantization alike
(:func:`~tvm_intsmooth.pipeline.canonicalize.canonical_model`).
On targets other than CPUs (``llvm``), the build phases are TVM's default Relax pipeline.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import tvm

from tvm_intsmooth.schedule.database import ScheduleLookup
from tvm_intsmooth.smoothing.artifact_facts import ArtifactFacts
from tvm_intsmooth.transform import (
    AddArtifactFacts,
    ApplyTunedDatabase,
    CanonicalizeClip,
    CanonicalizePRelu,
    CanonicalizeReductions,
    ConvertToBlockedInt8,
    CountVotes,
    DropMonotoneHead,
    DropRepeatedTileConfigs,
    DumpIR,
    FoldBatchNorm,
    FoldPadding,
    FuseSampleLoops,
    InjectIntegerNoise,
    ParallelizeOuterLoops,
    QuantizeToInteger,
    RequantizeInt32,
    ScalarConstantsAsTensors,
    ScheduleBlockedKernels,
    SymbolicBatch,
    UnwrapSingleOutput,
)

PHASES = (
    "float",
    "canonicalize",
    "quantize_to_integer",
    "inject_integer_noise",
    "count_votes",
    "artifact_facts",
    "blocked_layout",
    "legalize",
    "tuned_schedules",
    "kernel_schedules",
    "sample_loops",
    "lower",
)
BUILD_PHASES = PHASES[PHASES.index("blocked_layout") :]


@dataclass(frozen=True)
class Phase:
    """One named phase: a pass (often a Sequential) that the pipeline runs as a step."""

    name: str
    passes: tvm.transform.Pass

    def __post_init__(self):
        if self.name not in PHASES:
            raise ValueError(f"{self.name!r} is not a phase of {PHASES}")


def canonicalize_phases() -> list[Phase]:
    """What TVM's frontends emit -> the forms QuantizeToInteger rewrites (float, still)."""
    from tvm.relax import transform as rt

    return [
        Phase(
            "canonicalize",
            _sequential(
                [
                    UnwrapSingleOutput(),
                    rt.FoldConstant(),
                    rt.CanonicalizeBindings(),
                    CanonicalizeClip(),
                    FoldBatchNorm(),
                    FoldPadding(),
                    CanonicalizePRelu(),
                    CanonicalizeReductions(),
                    SymbolicBatch(),
                    rt.CanonicalizeBindings(),
                    rt.DeadCodeElimination(),
                    DropMonotoneHead(),
                    rt.DeadCodeElimination(),
                ]
            ),
        )
    ]


def quantize_phases(ranges: dict[str, float], input_dtype: str) -> list[Phase]:
    """float -> integer-only: the rewrite that reads the calibrated ``ranges``."""
    return [Phase("quantize_to_integer", QuantizeToInteger(ranges, input_dtype=input_dtype))]


def smoothing_phases(noise: InjectIntegerNoise, facts: ArtifactFacts) -> list[Phase]:
    """integer classifier (int16 pixels in) -> smoothed classifier returning votes."""
    return [
        Phase("inject_integer_noise", noise),
        Phase("count_votes", CountVotes()),
        Phase("artifact_facts", AddArtifactFacts(facts)),
    ]


def build_phases(
    target: tvm.target.Target,
    schedules: ScheduleLookup | None = None,
    blocked_layout: bool = True,
    fuse_samples: bool = True,
) -> list[Phase]:
    """The Relax build phases of a CPU target: blocked int8 layout, TVM's legalization and
    fusion, the tuned database that ``schedules`` finds, the fixed kernel schedules, the
    per-sample loop fusion, lowering.

    Without ``blocked_layout`` the integer convolutions stay as TVM legalizes them (for
    comparisons); without ``fuse_samples`` every kernel stays a call of its own (the per-kernel
    profiles); the other phases are the same.
    """
    from tvm.relax.backend.cpu_generic import pipeline as cpu

    layout = [ConvertToBlockedInt8(), RequantizeInt32()] if blocked_layout else []
    tuned = [ApplyTunedDatabase(schedules)] if schedules is not None else []
    kernels = [ScheduleBlockedKernels(target)] if blocked_layout else []
    return [
        Phase(
            "blocked_layout",
            _sequential(
                [*cpu.library_dispatch_passes(target), *layout, ScalarConstantsAsTensors()]
            ),
        ),
        Phase("legalize", _sequential(cpu.legalize_passes(target))),
        Phase("tuned_schedules", _sequential(tuned)),
        Phase("kernel_schedules", _sequential([*kernels, ParallelizeOuterLoops()])),
        Phase(
            "sample_loops",
            _sequential([FuseSampleLoops(), DropRepeatedTileConfigs()] if fuse_samples else []),
        ),
        Phase(
            "lower",
            _sequential([*cpu.dataflow_lower_passes(target), *cpu.finalize_passes(target)]),
        ),
    ]


def _sequential(passes: Sequence[tvm.transform.Pass]) -> tvm.transform.Pass:
    return tvm.transform.Sequential(list(passes))


def compose(
    phases: Sequence[Phase],
    dump_ir: str | os.PathLike | None = None,
    target: tvm.target.Target | None = None,
) -> tvm.transform.Pass:
    """The phases as one pass, each followed by a :class:`DumpIR` into ``dump_ir`` when given;
    run under ``target`` (the build phases need it as the current target)."""
    passes: list[tvm.transform.Pass] = []
    for phase in phases:
        passes.append(phase.passes)
        if dump_ir is not None:
            passes.append(DumpIR(dump_ir, PHASES.index(phase.name), phase.name))
    sequence = tvm.transform.Sequential(passes)
    if target is None:
        return sequence

    @tvm.transform.module_pass(opt_level=0, name="IntSmoothPhases")
    def under_target(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        with target:
            return sequence(mod)

    return under_target


def dump_input(mod: tvm.IRModule, dump_ir: str | os.PathLike | None, phase: str = "float") -> None:
    """Write ``mod`` as the result of ``phase`` (the pipeline's input: ``float``; the module
    that calibration and quantization share: ``canonicalize``), when dumping."""
    if dump_ir is not None:
        DumpIR(dump_ir, PHASES.index(phase), phase)(mod)


def cpu_pipeline(
    target: tvm.target.Target,
    schedules: ScheduleLookup | None = None,
    blocked_layout: bool = True,
    dump_ir: str | os.PathLike | None = None,
    fuse_samples: bool = True,
) -> tvm.transform.Pass:
    """The build phases of a CPU target as one Relax pipeline for ``tvm.compile``."""
    phases = build_phases(target, schedules, blocked_layout, fuse_samples)
    return compose(phases, dump_ir, target)


def fused_module(mod: tvm.IRModule, target) -> tvm.IRModule:
    """``mod`` after the build phases up to ``legalize`` (operator fusion): what tuning extracts
    its tasks from and what a tuned database is applied to."""
    from tvm_intsmooth.schedule.targets import resolve_target

    tgt = resolve_target(target).tvm_target
    phases = build_phases(tgt)[: BUILD_PHASES.index("legalize") + 1]
    return compose(phases, target=tgt)(mod)
