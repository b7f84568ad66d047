"""User-facing errors.

Every problem that a user can fix (a bad file, an unsupported operator, a wrong shape) is raised as
an :class:`IntSmoothError` with a message that names the thing and says what to do. The CLI prints
such errors as one paragraph and exits non-zero, without a traceback.
"""

import tvm_ffi


class IntSmoothError(Exception):
    """An error caused by the user's input, with a message meant to be read by a person."""


class UnsupportedModelError(IntSmoothError):
    """The model uses operators or shapes that the integer pipeline cannot handle."""


class DataError(IntSmoothError):
    """A data file is missing, truncated, mislabelled or of the wrong shape or dtype."""


# Registered so that an error raised inside a Python pass keeps its class when it crosses the
# FFI (tvm.transform passes run through it); unregistered, it comes back as a RuntimeError.
for _error in (IntSmoothError, UnsupportedModelError, DataError):
    tvm_ffi.register_error(_error)
