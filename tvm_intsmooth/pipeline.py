"""The ``"intsmooth"`` Relax pipeline: a float classifier in, a VM-ready smoothed classifier out.

Registered with ``tvm.relax.register_pipeline`` (see :mod:`tvm_intsmooth.tvm_hooks` for when), so a
TVM script can write::

    import tvm, tvm_intsmooth
    from tvm import relax

    mod = relax.frontend.onnx.from_onnx(onnx_model, keep_params_in_input=False)
    pipeline = relax.get_pipeline("intsmooth", sigma=0.25, calibration=images, batch=100)
    ex = tvm.compile(mod, target="llvm", relax_pipeline=pipeline)
    clf = tvm_intsmooth.SmoothedClassifier(relax.VirtualMachine(ex, tvm.cpu()), pipeline.metadata())

It is one pass with these phases, each optionally followed by an IR dump (``dump_ir=DIR``):
``00_float`` (the input after the frontend folding passes), ``01_quantize_to_integer``,
``02_inject_integer_noise``, ``03_count_votes``, ``04_build`` (the target's Relax build phases, the
ones :func:`tvm_intsmooth.build` uses, with ParallelizeOuterLoops and tuned schedules where the
schedule library has them). The same phases make :func:`tvm_intsmooth.smooth` followed by
:func:`tvm_intsmooth.build`, so the pipeline and ``intsmooth compile`` give the same votes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
import tvm

from .analysis import DumpIR, check_integer_only
from .errors import IntSmoothError
from .schedule.build import TargetLike, relax_build_phases
from .schedule.database import AUTO, ScheduleLookup
from .schedule.targets import resolve_target
from .smoothing.api import SmoothedModel, apply_smoothing
from .smoothing.inject_integer_noise import InjectIntegerNoise


@tvm.transform.module_pass(opt_level=0, name="IntSmoothPipeline")
class IntSmoothPipeline:
    """Quantize, inject integer noise, count votes, then TVM's build phases for the target.

    Args:
        sigma: noise level in [0, 1] pixel units.
        calibration: uint8 N x C x H x W images (or an iterable of batches) for the activation
            ranges, measured on one noisy copy of each.
        batch: noisy samples per call of the compiled function.
        clip: noisy pixels unclipped ("none", the default) or clamped to 0..255 ("clip").
        bits: uniform width of the noise sampler (64 or 32).
        target: the target to build for; default: the one ``tvm.compile`` runs the pipeline
            under (``tvm.target.Target.current()``), else the host.
        dump_ir: folder to write the IR after every phase to.
        schedules: tuned schedules, as :func:`tvm_intsmooth.build` takes them: ``"auto"`` (the
            shipped database whose workload key matches, if any), a database folder, or None.
        require_integer_only: fail (IntSmoothError listing every float) unless the built module
            is integer-only.

    After construction, ``noise`` is the :class:`InjectIntegerNoise` pass and ``table`` its noise
    table (thresholds, ``tv_per_coordinate()``). After the pipeline ran, ``smoothed`` is the
    :class:`SmoothedModel`, ``tv_bound`` the sampler's TV bound per sample and ``metadata()`` what
    :class:`tvm_intsmooth.SmoothedClassifier` needs, and ``schedules`` the
    :class:`ScheduleLookup` that tells which database was applied (``schedules.used``).
    """

    def __init__(
        self,
        sigma: float,
        calibration: np.ndarray | Iterable[np.ndarray] | None = None,
        *,
        batch: int = 100,
        clip: str = "none",
        bits: int = 64,
        target: TargetLike | None = None,
        dump_ir: str | os.PathLike | None = None,
        require_integer_only: bool = True,
        schedules: str | os.PathLike | None = AUTO,
    ):
        if calibration is None:
            raise IntSmoothError(
                'the "intsmooth" pipeline needs calibration=IMAGES (uint8 N x C x H x W pixels, '
                "e.g. a few hundred training images) to measure the activation ranges."
            )
        self.noise = InjectIntegerNoise(sigma, batch, clip=clip, bits=bits)
        self.table = self.noise.table
        self.calibration = calibration
        self.target = target
        self.dump_ir = dump_ir
        self.require_integer_only = require_integer_only
        self.smoothed: SmoothedModel | None = None
        self._schedules = schedules
        self.schedules: ScheduleLookup | None = None

    @property
    def tv_bound(self) -> float:
        """Total-variation bound between the drawn and the exact noise, per noisy sample."""
        return self._smoothed().tv_bound

    def metadata(self) -> dict:
        """sigma, noise, TV bound, batch, shapes: the meta of a SmoothedClassifier."""
        return self._smoothed().metadata()

    def _smoothed(self) -> SmoothedModel:
        if self.smoothed is None:
            raise IntSmoothError(
                "the pipeline has not run yet: the input shape (and so the TV bound per sample) "
                "is known once tvm.compile(mod, relax_pipeline=pipeline) or pipeline(mod) ran."
            )
        return self.smoothed

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        target = self.target
        if target is None:
            current = tvm.target.Target.current()
            target = "host" if current is None else current
        spec = resolve_target(target)
        self.smoothed = apply_smoothing(mod, self.calibration, self.noise, dump_ir=self.dump_ir)
        with spec.tvm_target:
            self.schedules = ScheduleLookup(spec, self._schedules)
            built = relax_build_phases(spec, self.schedules)(self.smoothed.mod)
        if self.dump_ir is not None:
            DumpIR(self.dump_ir, 4, "build")(built)
        if self.require_integer_only:
            check_integer_only(built, raise_on_error=True)
        return built
