"""Independent numpy references for the integer graphs."""

from tvm_intsmooth.reference.interpreter import interpret

__all__ = ["interpret"]
