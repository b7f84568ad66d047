"""Targets (targets/ folder), building for them, exporting and loading compiled libraries."""

from tvm_intsmooth import tvm_hooks
from tvm_intsmooth.schedule.build import build, export, load, lower
from tvm_intsmooth.schedule.targets import TargetSpec, list_targets, resolve_target

__all__ = ["TargetSpec", "build", "export", "list_targets", "load", "lower", "resolve_target"]

tvm_hooks.register()
