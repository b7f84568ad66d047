"""The library this machine runs to check vote counts that a remote device computed.

Vote counts are a pure function of (module, image, seed, stream, sample range), the same to the
bit on every target, so the host can recompute any batch that a remote device returned
(docs/soundness.md, section 9). It needs a build of the same module that it can run: the
artifact's ``model.so`` where this machine runs it, else ``model.host.so``, which ``intsmooth
compile`` adds for targets that the compiling machine cannot run (an ARM board's): the same
module built for the portable target of the compiling machine's architecture (``x86-64``, any
64-bit x86 CPU; ``rpi4``, any aarch64 CPU with NEON). It is shipped in the artifact, hashed in
meta.json like ``model.so``, rather than rebuilt at certify time: a rebuild from ``model.onnx``
would need the calibration data, and any rebuild the whole compiler run at every certify.
"""

from __future__ import annotations

from pathlib import Path

import tvm

from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.pipeline.build import build, export
from tvm_intsmooth.runtime.artifact import HOST_LIBRARY_FILE, ArtifactMeta
from tvm_intsmooth.schedule.targets import (
    TargetSpec,
    host_can_run,
    host_features,
    host_target_name,
    list_targets,
    resolve_target,
)

# The bundled target of each architecture that every CPU of it runs.
PORTABLE_TARGETS = {"x86_64": "x86-64", "aarch64": "rpi4"}


def portable_host_target() -> str | None:
    """The bundled target that any CPU of this machine's architecture runs (None: none)."""
    arch, _ = host_features()
    return PORTABLE_TARGETS.get(arch or "")


def export_host_library(mod: tvm.IRModule, spec: TargetSpec, folder: Path) -> tuple | None:
    """Build ``mod`` for this machine's portable target into ``folder``/model.host.so when this
    machine cannot run a library built for ``spec``; returns (target name, path), or None when
    no host library is needed (or this architecture has no portable target)."""
    portable = portable_host_target()
    if host_can_run(spec.resolved_name) or portable is None:
        return None
    host = resolve_target(portable)
    executable = build(mod, host, require_integer_only=True, schedules=None)
    return portable, export(executable, folder / HOST_LIBRARY_FILE, host)


def verification_library(folder: str | Path, meta: ArtifactMeta) -> Path:
    """The artifact's library that this machine runs, SHA-256 checked: model.so where this
    machine runs its target, else model.host.so; an IntSmoothError when it runs neither."""
    if host_can_run(meta.resolved_target or meta.target):
        return meta.check_library(folder)
    if meta.host_target is not None and host_can_run(meta.host_target):
        return meta.check_host_library(folder)
    have = meta.resolved_target or meta.target
    if meta.host_target:
        have += f" and {meta.host_target}"
    raise IntSmoothError(
        f"artifact {folder}: this machine cannot run its libraries (built for {have}), so it "
        "cannot check the counts that remote devices return. Compile the artifact on a "
        "machine of this architecture (compile adds a library for it), or pass --verify 0 to "
        "trust the servers' counts unchecked"
    )


def check_runs_here(folder: str | Path, meta: ArtifactMeta) -> None:
    """An IntSmoothError, before anything runs, where this machine cannot run the artifact's
    library: a bundled target whose instructions this CPU lacks (x86-vnni on an AVX2-only CPU:
    it would die of an illegal instruction) or whose unit Linux does not grant (x86-amx), or
    another architecture's. Target files of the user's own are not checked."""
    name = meta.resolved_target or meta.target
    if name not in list_targets() or name == "host" or host_can_run(name):
        return
    here = host_target_name() or "none of the bundled targets"
    raise IntSmoothError(
        f"artifact {folder}: built for {name}, which this machine cannot run (it runs {here}). "
        "Compile it again here (intsmooth compile ... --target host), or run it on a device of "
        "its target over TVM RPC (--rpc / --tracker)"
    )
