"""Schedule: targets (targets/ folder), the blocked int8 kernels and their tensor intrinsics, and
the tuned schedule databases (schedules/ folder). Building for a target is in
:mod:`tvm_intsmooth.pipeline`."""

from tvm_intsmooth.schedule.targets import TargetSpec, list_targets, resolve_target

__all__ = ["TargetSpec", "list_targets", "resolve_target"]
