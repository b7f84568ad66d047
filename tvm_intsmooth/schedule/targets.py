"""Compilation targets: the bundled files in targets/ and the machine this runs on.

A target file is a small JSON object (targets/README.md)::

    {
      "description": "Raspberry Pi 5 (4x Cortex-A76, aarch64 NEON with dot product)",
      "target": {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a76",
                 "mattr": ["+neon", "+dotprod"], "num-cores": 4},
      "host": {...},                              # optional, only where it differs
      "cross_compiler": "aarch64-linux-gnu-gcc"   # optional, for exporting the library
    }

The target's flags decide which int8 kernels MetaSchedule generates (VNNI, sdot or NEON smull),
and ``num-cores`` is the parallelism MetaSchedule tunes for. The name ``host`` is computed at run
time for the machine this process runs on: the best bundled target whose instruction sets this
CPU has (x86-vnni, x86-avx2, x86-64; rpi5-like or rpi4-like on aarch64), with ``num-cores`` set to
its physical core count; ``TargetSpec.resolved`` names the file it resolved to.
"""

from __future__ import annotations

import json
import os
import site
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import tvm

from tvm_intsmooth.errors import IntSmoothError

__all__ = [
    "TargetSpec",
    "resolve_target",
    "list_targets",
    "targets_dir",
    "host_target_spec",
    "host_target_name",
    "host_features",
    "host_can_run",
]

HOST = "host"
_FILE_KEYS = {"description", "target", "host", "cross_compiler"}


@dataclass(frozen=True)
class TargetSpec:
    """A resolved compilation target.

    Attributes:
        name: the target's name (file stem, ``host``, or ``custom``).
        target: the TVM target the kernels are compiled for.
        host: the TVM host target where it differs from ``target`` (None for CPU targets).
        cross_compiler: the C compiler that links the exported library (None: the system one).
        description: one line for people.
        resolved: for ``host``, the bundled target it resolved to (``x86-vnni``...); None for
            the others, and for a host that matches no bundled target.
    """

    name: str
    target: tvm.target.Target
    host: tvm.target.Target | None
    cross_compiler: str | None
    description: str
    resolved: str | None = None

    @property
    def resolved_name(self) -> str:
        """The bundled target this is (``host`` resolved: ``x86-vnni``...), else its name."""
        return self.resolved or self.name

    @property
    def num_cores(self) -> int | None:
        """The target's ``num-cores`` attribute (None when it has none)."""
        value = self.target.attrs.get("num-cores")
        return None if value is None else int(value)

    @property
    def tvm_target(self) -> tvm.target.Target:
        """The target to hand to ``tvm.compile``: ``target`` with ``host`` attached if set."""
        return self.target if self.host is None else self.target.with_host(self.host)

    def with_num_cores(self, num_cores: int) -> TargetSpec:
        """A copy whose target has ``num-cores`` set to ``num_cores``."""
        if isinstance(num_cores, bool) or not isinstance(num_cores, int) or num_cores < 1:
            raise IntSmoothError(f"num_threads must be a positive integer, got {num_cores!r}.")
        config = _target_config(self.target)
        config["num-cores"] = num_cores
        return replace(self, target=_make_target(config, f"target {self.name!r}"))


def targets_dir() -> Path:
    """The bundled target files: targets/ beside the package in a source checkout, or
    ``<prefix>/share/tvm_intsmooth/targets`` where a wheel installed them (``pip install
    --user`` puts them under the user base instead)."""
    checkout = Path(__file__).resolve().parents[2] / "targets"
    installed = [
        Path(base) / "share" / "tvm_intsmooth" / "targets"
        for base in (sys.prefix, site.getuserbase())
    ]
    return next((d for d in (checkout, *installed) if d.is_dir()), installed[0])


def list_targets() -> list[str]:
    """Names that :func:`resolve_target` accepts: the bundled target files, and ``host``."""
    folder = targets_dir()
    names = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
    return [*names, HOST]


def host_num_cores() -> int:
    """Physical cores this process may use: psutil's physical count, capped by CPU affinity."""
    import psutil

    physical = psutil.cpu_count(logical=False)
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    counts = [c for c in (physical, available, os.cpu_count()) if c]
    return max(1, min(counts)) if counts else 1


# Bundled targets a host may resolve to, best first, with the CPU features (LLVM names) that the
# file's mcpu lets LLVM use in the kernels: a host qualifies only if it has all of them.
_VNNI = {"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd", "avx512vnni", "avx2", "fma",
         "bmi2"}  # fmt: skip
_HOST_CHOICES = {
    "x86_64": [
        ("x86-amx", _VNNI | {"avx512vbmi", "avx512vbmi2", "avx512bf16", "avx512fp16", "amx-tile",
                             "amx-int8"}),
        ("x86-vnni", _VNNI),
        ("x86-avx2", {"avx2", "fma", "bmi", "bmi2", "f16c", "movbe"}),
        ("x86-64", set()),
    ],
    "aarch64": [("rpi5", {"neon", "dotprod"}), ("rpi4", {"neon"})],
}  # fmt: skip
# /proc/cpuinfo spells some flags differently from LLVM.
_CPUINFO_TO_LLVM = {"avx512_vnni": "avx512vnni", "bmi1": "bmi", "asimd": "neon",
                    "asimddp": "dotprod", "avx512_vbmi2": "avx512vbmi2",
                    "avx512_bf16": "avx512bf16", "avx512_fp16": "avx512fp16",
                    "amx_tile": "amx-tile", "amx_int8": "amx-int8"}  # fmt: skip


def _os_grants(needed: set[str]) -> bool:
    """Whether the OS lets this process use the units behind the CPU features ``needed``:
    Linux hands out AMX's tile state only on request."""
    if "amx-tile" not in needed:
        return True
    from tvm_intsmooth.schedule.intrinsics.amx import granted

    return granted()


def cpuinfo_features(cpuinfo: str) -> tuple[str | None, set[str]]:
    """The architecture (``x86_64``/``aarch64``/None) and feature flags, in LLVM's names, of a
    ``/proc/cpuinfo`` text (the first processor's ``flags`` or ``Features`` line)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("flags", "features"):
            flags = {_CPUINFO_TO_LLVM.get(f, f) for f in value.split()}
            return ("x86_64" if key == "flags" else "aarch64"), flags
    return None, set()


def llvm_host_features() -> tuple[str | None, set[str]]:
    """The architecture and the features LLVM reports for this machine's CPU (the fallback where
    /proc/cpuinfo is missing)."""
    triple = tvm.target.codegen.llvm_get_system_triple()
    arch = next((a for a in _HOST_CHOICES if triple.startswith(a)), None)
    if arch is None and triple.startswith("arm64"):
        arch = "aarch64"
    if arch is None:
        return None, set()
    wanted = set().union(*(features for _, features in _HOST_CHOICES[arch]))
    # LLVM's feature detection (CPUID on x86), which holds where a hypervisor hides the CPU
    # model: the model's name would then give the features of an older CPU.
    detect = tvm.get_global_func("tvm.codegen.llvm.GetHostCPUFeatures", allow_missing=True)
    if detect is not None:
        found = {str(k): bool(v) for k, v in dict(detect()).items()}
        return arch, {f for f in wanted if found.get(f)}
    cpu = tvm.target.codegen.llvm_get_system_cpu()
    probe = tvm.target.Target({"kind": "llvm", "mtriple": triple, "mcpu": cpu})
    return arch, {f for f in wanted if tvm.target.codegen.target_has_features(f, probe)}


def host_features() -> tuple[str | None, set[str]]:
    """This machine's architecture and CPU features (LLVM names): /proc/cpuinfo, or LLVM's view of
    the host CPU where that file is missing or unrecognised."""
    try:
        arch, features = cpuinfo_features(Path("/proc/cpuinfo").read_text())
    except OSError:
        arch, features = None, set()
    return (arch, features) if arch is not None else llvm_host_features()


def host_target_name(arch: str | None = None, features: set[str] | None = None) -> str | None:
    """The best bundled target for a CPU of ``arch`` with ``features`` (LLVM names), or None if
    none fits. Without arguments: this machine (:func:`host_features`)."""
    this_machine = features is None
    if this_machine:
        arch, features = host_features()
    for name, needed in _HOST_CHOICES.get(arch or "", []):
        if needed <= features and (not this_machine or _os_grants(needed)):
            return name
    return None


def host_can_run(name: str) -> bool:
    """Whether this machine's CPU has every feature that the bundled target ``name`` needs
    (``x86-vnni`` on an AVX2-only CPU: False)."""
    arch, features = host_features()
    return any(
        n == name and needed <= features and _os_grants(needed)
        for n, needed in _HOST_CHOICES.get(arch or "", [])
    )


def host_target_spec() -> TargetSpec:
    """The machine this runs on: the best bundled target its CPU supports (see
    :func:`host_target_name`) with ``num-cores`` set to its physical core count; where none
    fits, LLVM's host CPU and triple."""
    cores = host_num_cores()
    cpu = tvm.target.codegen.llvm_get_system_cpu()
    name = host_target_name()
    path = targets_dir() / f"{name}.json"
    if name is not None and path.is_file():
        bundled = load_target_file(path).with_num_cores(cores)
        description = f"this machine ({cpu}, {cores} cores) as {name}: {bundled.description}"
        return replace(bundled, name=HOST, description=description, resolved=name)
    triple = tvm.target.codegen.llvm_get_system_triple()
    config = {"kind": "llvm", "mtriple": triple, "mcpu": cpu, "num-cores": cores}
    target = _make_target(config, "the host target")
    return TargetSpec(HOST, target, None, None, f"this machine ({cpu}, {triple})")


def resolve_target(target: str | os.PathLike | dict | TargetSpec | tvm.target.Target) -> TargetSpec:
    """Turn a target name, a path to a target JSON file, a dict or a TVM target into a TargetSpec.

    Args:
        target: ``"host"``; a bundled name such as ``"rpi5"`` (see :func:`list_targets`); a path
            to a JSON file in the targets/ format; a dict in that format (with a ``"target"``
            key) or a plain TVM target dict (with a ``"kind"`` key); a ``tvm.target.Target``;
            or a TargetSpec, returned unchanged.

    Raises:
        IntSmoothError: unknown name (the message lists the known ones), unreadable or invalid
            file, or a target that TVM rejects.
    """
    if isinstance(target, TargetSpec):
        return target
    if isinstance(target, tvm.target.Target):
        bundled = _bundled_like(target)
        return TargetSpec(
            "custom",
            target,
            target.host,
            bundled.cross_compiler if bundled else None,
            "user-supplied TVM target" + (f" (as {bundled.name})" if bundled else ""),
            resolved=bundled.name if bundled else None,
        )
    if isinstance(target, dict):
        if "target" in target:
            return _spec_from_config(target, "custom", "the target dict")
        return TargetSpec("custom", _make_target(target, "the target dict"), None, None, "")
    if not isinstance(target, (str, os.PathLike)):
        raise IntSmoothError(
            f"target must be a name, a path to a JSON file, a dict or a TargetSpec, "
            f"got {type(target).__name__}."
        )
    text = os.fspath(target)
    if text == HOST:
        return host_target_spec()
    path = Path(text)
    if path.suffix == ".json" or path.is_file():
        return load_target_file(path)
    bundled = targets_dir() / f"{text}.json"
    if bundled.is_file():
        return load_target_file(bundled)
    raise IntSmoothError(
        f"unknown target {text!r}: known targets are {', '.join(list_targets())} "
        f"(files in {targets_dir()}), or give the path to a target JSON file."
    )


def _bundled_like(target: tvm.target.Target) -> TargetSpec | None:
    """The bundled target that ``target`` is, up to ``num-cores`` (so that a TVM user's
    ``Target`` finds the tuned databases of the bundled one), or None."""

    def essence(t: tvm.target.Target) -> dict:
        return {k: v for k, v in _target_config(t).items() if k != "num-cores"}

    wanted = essence(target)
    folder = targets_dir()
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        spec = load_target_file(path)
        if essence(spec.target) == wanted:
            return spec
    return None


def load_target_file(path: str | os.PathLike) -> TargetSpec:
    """Read one target JSON file (format in the module docstring); its name is the file stem."""
    path = Path(path)
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise IntSmoothError(f"target file {path} does not exist.") from None
    except (OSError, json.JSONDecodeError) as err:
        raise IntSmoothError(f"target file {path} is not readable JSON: {err}") from None
    return _spec_from_config(config, path.stem, f"target file {path}")


def _spec_from_config(config: Any, name: str, origin: str) -> TargetSpec:
    if not isinstance(config, dict) or not isinstance(config.get("target"), dict):
        raise IntSmoothError(f"{origin} must be a JSON object with a 'target' object.")
    unknown = set(config) - _FILE_KEYS
    if unknown:
        raise IntSmoothError(
            f"{origin} has unknown keys {sorted(unknown)}; allowed: {sorted(_FILE_KEYS)}."
        )
    target = _make_target(config["target"], origin)
    if target.kind.name == "llvm" and "num-cores" not in config["target"]:
        raise IntSmoothError(
            f"{origin} has no 'num-cores' in its target: add the board's physical core count "
            "(MetaSchedule needs it)."
        )
    host = config.get("host")
    host_target = _make_target(host, f"{origin} (host)") if host is not None else None
    cross = config.get("cross_compiler")
    if cross is not None and (not isinstance(cross, str) or not cross):
        raise IntSmoothError(f"{origin}: 'cross_compiler' must be a compiler command name.")
    description = config.get("description", "")
    if not isinstance(description, str):
        raise IntSmoothError(f"{origin}: 'description' must be a string.")
    return TargetSpec(name, target, host_target, cross, description)


def _make_target(config: Any, origin: str) -> tvm.target.Target:
    if not isinstance(config, dict) or "kind" not in config:
        raise IntSmoothError(f"{origin}: a target must be an object with a 'kind' (e.g. 'llvm').")
    try:
        return tvm.target.Target(config)
    except (ValueError, TypeError, RuntimeError) as err:
        raise IntSmoothError(f"{origin}: TVM rejects the target {config}: {err}") from None


def _target_config(target: tvm.target.Target) -> dict:
    """The user-settable part of a target as a plain dict (feature.* and keys are derived)."""
    exported = dict(target.export())
    derived = {"tag", "keys", "host"}
    return {k: _plain(v) for k, v in exported.items() if k not in derived and "." not in k}


def _plain(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "__iter__"):
        return [_plain(v) for v in value]
    return value
