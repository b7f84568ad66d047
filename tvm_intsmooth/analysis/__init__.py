"""Static analyses of IR modules, such as the integer-only checker."""

from tvm_intsmooth import tvm_hooks
from tvm_intsmooth.analysis.check_integer_only import Finding, check_integer_only
from tvm_intsmooth.analysis.dump_ir import DumpIR, with_dumps

__all__ = ["DumpIR", "Finding", "check_integer_only", "with_dumps"]

tvm_hooks.register()
