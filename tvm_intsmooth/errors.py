"""User-facing errors.

Every problem that a user can fix (a bad file, an unsupported operator, a wrong shape) is raised as
an :class:`IntSmoothError` with a message that names the thing and says what to do. The CLI prints
such errors as one paragraph and exits with status 1, without a traceback.

This module imports nothing heavy (the CLI's start-up depends on it); the classes are registered
with TVM's FFI by :mod:`tvm_intsmooth.registration` when the compiler side is loaded.
"""


class IntSmoothError(Exception):
    """An error caused by the user's input, with a message meant to be read by a person."""


class UnsupportedModelError(IntSmoothError):
    """The model uses operators or shapes that the integer pipeline cannot handle."""


class DataError(IntSmoothError):
    """A data file is missing, truncated, mislabelled or of the wrong shape or dtype."""


ERRORS = (IntSmoothError, UnsupportedModelError, DataError)
