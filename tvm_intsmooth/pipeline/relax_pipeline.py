"""The ``"intsmooth"`` Relax pipeline: a float classifier in, a VM-ready smoothed classifier out.

Registered with ``tvm.relax.register_pipeline`` by :mod:`tvm_intsmooth.registration` (once both
packages are loaded), so a TVM script can write::

    import tvm, tvm_intsmooth
    from tvm import relax

    mod = relax.frontend.onnx.from_onnx(onnx_model, keep_params_in_input=False)
    calibration = tvm_intsmooth.calibrate(mod, images, sigma=0.25)   # runs the float model
    pipeline = relax.get_pipeline("intsmooth", sigma=0.25, calibration=calibration, batch=100)
    ex = tvm.compile(mod, target="llvm", relax_pipeline=pipeline)
    clf = tvm_intsmooth.SmoothedClassifier(relax.VirtualMachine(ex, tvm.cpu()), pipeline.metadata())

Calibration is a step before the pipeline (it runs the float model); the pipeline only rewrites.
It runs every phase of :mod:`tvm_intsmooth.pipeline.phases`, the ones :func:`tvm_intsmooth.smooth`
followed by :func:`tvm_intsmooth.build` run, so the pipeline and ``intsmooth compile`` give the
same votes; ``dump_ir=DIR`` writes the IR after each phase under the same names.
"""

from __future__ import annotations

import os

import tvm

from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.pipeline.build import TargetLike, relax_pipeline_for
from tvm_intsmooth.pipeline.calibrate import Calibration
from tvm_intsmooth.pipeline.smooth import SmoothedModel, smooth_calibrated
from tvm_intsmooth.schedule.database import AUTO, ScheduleLookup
from tvm_intsmooth.schedule.targets import resolve_target
from tvm_intsmooth.transform import CheckIntegerOnly, InjectIntegerNoise


@tvm.transform.module_pass(opt_level=0, name="IntSmoothPipeline")
class IntSmoothPipeline:
    """Quantize, inject integer noise, count votes, then TVM's build phases for the target.

    Args:
        sigma: noise level in [0, 1] pixel units.
        calibration: the activation ranges, from :func:`tvm_intsmooth.calibrate` with the same
            sigma (and ``bits``, ``clip``).
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
        calibration: Calibration | None = None,
        *,
        batch: int = 100,
        clip: str = "none",
        bits: int = 64,
        target: TargetLike | None = None,
        dump_ir: str | os.PathLike | None = None,
        require_integer_only: bool = True,
        schedules: str | os.PathLike | None = AUTO,
    ):
        if not isinstance(calibration, Calibration):
            raise IntSmoothError(
                'the "intsmooth" pipeline needs calibration=tvm_intsmooth.calibrate(mod, images, '
                "sigma=...) (the activation ranges, measured on a few hundred uint8 training "
                f"images before compiling), got {type(calibration).__name__}."
            )
        self.noise = InjectIntegerNoise(sigma, batch, clip=clip, bits=bits)
        calibration.check_noise(sigma, bits, clip)
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
        self.smoothed = smooth_calibrated(mod, self.calibration, self.noise, dump_ir=self.dump_ir)
        self.schedules = ScheduleLookup(spec, self._schedules)
        build = relax_pipeline_for(spec, "default", self.schedules, self.dump_ir)
        if self.require_integer_only:
            build = tvm.transform.Sequential([build, CheckIntegerOnly()])
        return build(self.smoothed.mod)
