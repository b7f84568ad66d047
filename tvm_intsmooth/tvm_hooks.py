"""What tvm_intsmooth registers with TVM: its error classes and the ``"intsmooth"`` pipeline.

:func:`register` runs when ``tvm_intsmooth`` is imported after ``tvm`` (a TVM user's script:
``import tvm`` then ``import tvm_intsmooth``), and when any compiler-side subpackage of
tvm_intsmooth (importer, quantize, the smoothing passes, schedule, runtime, analysis) is first
imported. The ``intsmooth`` command's light paths (``--help``, ``report``) import none of them, so
they never load TVM. After it ran, ``tvm.relax.get_pipeline("intsmooth", sigma=..., ...)`` returns
an :class:`tvm_intsmooth.pipeline.IntSmoothPipeline`.
"""

from __future__ import annotations

PIPELINE_NAME = "intsmooth"
_registered = False


def _intsmooth_pipeline(**kwargs):
    """``tvm.relax.get_pipeline("intsmooth", **kwargs)``: see :class:`IntSmoothPipeline`."""
    from .pipeline import IntSmoothPipeline

    return IntSmoothPipeline(**kwargs)


def register() -> None:
    """Register the error classes with tvm_ffi and the pipeline with Relax (idempotent)."""
    global _registered
    if _registered:
        return
    import tvm_ffi
    from tvm import relax

    from .errors import ERRORS

    # An error raised inside a Python pass keeps its class when it crosses the FFI (passes run
    # through it); unregistered, it would come back as a RuntimeError.
    for error in ERRORS:
        tvm_ffi.register_error(error)
    if PIPELINE_NAME not in relax.pipeline.PIPELINE_MAP:  # another copy may have registered it
        relax.register_pipeline(PIPELINE_NAME)(_intsmooth_pipeline)
    _registered = True
