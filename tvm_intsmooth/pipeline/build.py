"""Build a Relax module for a target, export it as a shared library, load it into a VM."""

from __future__ import annotations

import os
import platform
import shutil
from collections.abc import Callable
from pathlib import Path

import tvm
from tvm import relax, tirx
from tvm.support import cc

from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.pipeline.phases import cpu_pipeline
from tvm_intsmooth.schedule.database import ScheduleLookup, TunedDatabase
from tvm_intsmooth.schedule.targets import TargetSpec, resolve_target
from tvm_intsmooth.transform import CheckIntegerOnly

__all__ = ["build", "lower", "export", "load"]

TargetLike = str | os.PathLike | dict | TargetSpec | tvm.target.Target
_MACHINE_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}
_CROSS_PACKAGES = {"aarch64-linux-gnu-gcc": "gcc-aarch64-linux-gnu"}


def _target_spec(target: TargetLike, num_threads: int | None) -> TargetSpec:
    spec = resolve_target(target)
    return spec if num_threads is None else spec.with_num_cores(num_threads)


def relax_pipeline_for(
    spec: TargetSpec,
    pipeline: str | tvm.transform.Pass | Callable = "default",
    schedules: ScheduleLookup | None = None,
    dump_ir: str | os.PathLike | None = None,
    fuse_samples: bool = True,
) -> tvm.transform.Pass | Callable:
    """The Relax pipeline that :func:`build` runs: on CPUs, ``"default"`` means the build phases
    of :mod:`tvm_intsmooth.pipeline.phases` with the tuned database that ``schedules`` finds;
    elsewhere, or for another name, that pipeline of TVM's; a pass is used as it is."""
    if isinstance(pipeline, str) and pipeline == "default" and spec.target.kind.name == "llvm":
        return cpu_pipeline(spec.tvm_target, schedules, dump_ir=dump_ir, fuse_samples=fuse_samples)
    return relax.get_pipeline(pipeline) if isinstance(pipeline, str) else pipeline


def _checked(pipeline, errors: list[IntSmoothError]) -> tvm.transform.Pass:
    return tvm.transform.Sequential([pipeline, CheckIntegerOnly(errors)])


def build(
    mod: tvm.IRModule,
    target: TargetLike = "host",
    *,
    num_threads: int | None = None,
    relax_pipeline: str | tvm.transform.Pass | Callable = "default",
    require_integer_only: bool = False,
    schedules: str | os.PathLike | TunedDatabase | ScheduleLookup | None = "auto",
    dump_ir: str | os.PathLike | None = None,
    fuse_samples: bool = True,
) -> relax.VMExecutable:
    """Compile a Relax module with ``tvm.compile`` for a target.

    Args:
        mod: the Relax module (with or without PrimFuncs).
        target: ``"host"``, a bundled target name, a target JSON path, a dict or a TargetSpec
            (see :func:`tvm_intsmooth.schedule.targets.resolve_target`).
        num_threads: overrides the target's ``num-cores`` (the parallelism kernels are built
            for; the runtime thread count is set by ``TVM_NUM_THREADS`` where the library runs).
        relax_pipeline: the Relax pipeline name or pass (default: the build phases of
            :mod:`tvm_intsmooth.pipeline.phases` on llvm targets, TVM's default elsewhere).
        require_integer_only: run :func:`check_integer_only` on the lowered Relax module and its
            PrimFuncs, and raise IntSmoothError listing every floating-point occurrence.
        schedules: tuned MetaSchedule schedules for the default CPU pipeline: ``"auto"`` (the
            shipped database in schedules/<target>/ whose workload key matches the module, if
            any), a database folder, a :class:`TunedDatabase`, a :class:`ScheduleLookup`
            (which then tells what was applied), or None (default schedules only).
        dump_ir: folder to write the IR after each build phase to (CPU targets).
        fuse_samples: run each run of per-sample kernels as one kernel (phase
            ``sample_loops``, CPU targets); False keeps every kernel a call of its own, for
            per-kernel profiles. The results are the same to the bit.

    Returns:
        The relax VM executable; run it with ``relax.VirtualMachine(ex, tvm.cpu())`` on a
        matching machine or export it with :func:`export`.
    """
    if not isinstance(mod, tvm.IRModule):
        raise IntSmoothError(f"build expects a tvm.IRModule, got {type(mod).__name__}.")
    spec = _target_spec(target, num_threads)
    errors: list[IntSmoothError] = []
    lookup = ScheduleLookup.of(spec, schedules)
    pipeline = relax_pipeline_for(spec, relax_pipeline, lookup, dump_ir, fuse_samples)
    if require_integer_only:
        pipeline = _checked(pipeline, errors)
    try:
        return tvm.compile(mod, target=spec.tvm_target, relax_pipeline=pipeline)
    except Exception:
        if errors:
            raise errors[0] from None
        raise


def lower(
    mod: tvm.IRModule,
    target: TargetLike = "host",
    *,
    relax_pipeline: str | tvm.transform.Pass | Callable = "default",
    schedules: str | os.PathLike | TunedDatabase | ScheduleLookup | None = "auto",
) -> tvm.IRModule:
    """The module as code generation sees it, for inspection (e.g. by check_integer_only).

    Relax functions are returned after the Relax pipeline (VM-lowered: explicit allocations and
    calls), and every PrimFunc after the target's TIR pipeline and host finalization (packed
    calling convention, flattened buffers). Functions that the TIR pipeline adds are included.
    """
    if not isinstance(mod, tvm.IRModule):
        raise IntSmoothError(f"lower expects a tvm.IRModule, got {type(mod).__name__}.")
    spec = resolve_target(target)
    tgt = spec.tvm_target
    lookup = ScheduleLookup.of(spec, schedules)
    with tgt:
        mod = relax_pipeline_for(spec, relax_pipeline, lookup)(mod)
    prim_funcs = {gv: f for gv, f in mod.functions.items() if isinstance(f, tirx.PrimFunc)}
    if not prim_funcs:
        return mod
    host = tgt.host if tgt.host is not None else tgt
    tir_mod = tirx.transform.BindTarget(tgt.with_host(host))(tvm.IRModule(prim_funcs))
    tir_pipeline, finalize_host, _ = tirx.get_default_tir_pipeline(tgt)
    tir_mod = finalize_host()(tir_pipeline(tir_mod))
    functions = {gv: f for gv, f in mod.functions.items() if not isinstance(f, tirx.PrimFunc)}
    functions.update(tir_mod.functions)
    return tvm.IRModule(functions, attrs=mod.attrs)


def _machine() -> str:
    machine = platform.machine().lower()
    return _MACHINE_ALIASES.get(machine, machine)


def _target_arch(spec: TargetSpec) -> str:
    triple = str(spec.target.attrs.get("mtriple", "") or "")
    return triple.split("-")[0] if triple else _machine()


def export(executable: tvm.runtime.Executable, path: str | os.PathLike, target: TargetLike) -> Path:
    """Export a built executable as a shared library for ``target``.

    Uses the target's cross compiler (e.g. ``aarch64-linux-gnu-gcc`` for the Raspberry Pi
    targets) where it has one, the system C compiler otherwise.

    Args:
        executable: what :func:`build` returned for the same target.
        path: the ``.so`` file to write (its folder is created).
        target: the target the executable was built for.

    Returns:
        The path written.

    Raises:
        IntSmoothError: the cross compiler is not installed, or the target is for another
            architecture and names no cross compiler.
    """
    spec = resolve_target(target)
    path = Path(path)
    fcompile = None
    if spec.cross_compiler is not None:
        if shutil.which(spec.cross_compiler) is None:
            package = _CROSS_PACKAGES.get(spec.cross_compiler, "the matching cross gcc")
            raise IntSmoothError(
                f"target {spec.name!r} needs the cross compiler {spec.cross_compiler!r}, which "
                f"is not on PATH: install it (Debian/Ubuntu: apt-get install {package})."
            )
        fcompile = cc.cross_compiler(spec.cross_compiler)
    elif _target_arch(spec) != _machine():
        raise IntSmoothError(
            f"target {spec.name!r} is for {_target_arch(spec)} but this machine is "
            f"{_machine()}: add a 'cross_compiler' to the target file."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    executable.export_library(str(path), fcompile=fcompile)
    return path


def load(path: str | os.PathLike, device: tvm.runtime.Device | None = None) -> relax.VirtualMachine:
    """Load an exported library into a Relax virtual machine on ``device`` (default: CPU 0)."""
    path = Path(path)
    if not path.is_file():
        raise IntSmoothError(f"compiled library {path} does not exist: build and export it first.")
    try:
        lib = tvm.runtime.load_module(str(path))
    except (RuntimeError, OSError) as err:
        raise IntSmoothError(
            f"cannot load {path} ({err}); was it built for another architecture? Build it with "
            "the 'host' target to run it here."
        ) from None
    return relax.VirtualMachine(lib, device if device is not None else tvm.cpu())
