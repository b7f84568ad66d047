"""Independent numpy references for the integer graphs."""

from .interpreter import interpret

__all__ = ["interpret"]
