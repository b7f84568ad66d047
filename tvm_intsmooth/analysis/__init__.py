"""Static analyses of IR modules, such as the integer-only checker."""

from tvm_intsmooth.analysis.check_integer_only import Finding, check_integer_only

__all__ = ["Finding", "check_integer_only"]
