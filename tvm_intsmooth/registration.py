"""What tvm_intsmooth registers with TVM: its error classes and the ``"intsmooth"`` pipeline.

This is the one place that registers, called once from ``tvm_intsmooth/__init__`` (which every
import of the package runs first). It happens as soon as both packages are loaded, in either
order, without ever loading TVM on its own (the ``intsmooth`` command's ``--help`` and ``report``
must not pay for it):

- ``import tvm`` then ``import tvm_intsmooth``: :func:`register` runs at once;
- ``import tvm_intsmooth`` then ``import tvm`` (also when a module of the package imports TVM):
  :class:`RegisterWhenTVMLoads`, an import hook, registers right after TVM executes
  ``tvm.relax.pipeline``.

A second import of the package (a reload, or another copy on the path) registers nothing twice:
what TVM already holds is left as it is.

Afterwards ``tvm.relax.get_pipeline("intsmooth", sigma=..., calibration=..., ...)`` returns an
:class:`tvm_intsmooth.pipeline.IntSmoothPipeline`, and an ``IntSmoothError`` raised inside a pass
keeps its class when it crosses TVM's FFI (unregistered, it would come back as a RuntimeError).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

PIPELINE_NAME = "intsmooth"
_RELAX_PIPELINE_MODULE = "tvm.relax.pipeline"
_registered = False


def _intsmooth_pipeline(**kwargs):
    """``tvm.relax.get_pipeline("intsmooth", **kwargs)``: see :class:`IntSmoothPipeline`."""
    from tvm_intsmooth.pipeline.relax_pipeline import IntSmoothPipeline

    return IntSmoothPipeline(**kwargs)


def register(relax_pipeline: ModuleType | None = None) -> None:
    """Register the error classes with tvm_ffi and the pipeline with Relax (idempotent).

    ``relax_pipeline`` is the ``tvm.relax.pipeline`` module when the import hook calls this
    while ``tvm.relax`` is still being imported; otherwise it is imported here.
    """
    global _registered
    if _registered:
        return
    import tvm_ffi

    from tvm_intsmooth.errors import ERRORS

    if relax_pipeline is None:
        from tvm.relax import pipeline as relax_pipeline
    for error in ERRORS:
        tvm_ffi.register_error(error)
    if PIPELINE_NAME not in relax_pipeline.PIPELINE_MAP:  # another copy may have registered it
        relax_pipeline.register_pipeline(PIPELINE_NAME)(_intsmooth_pipeline)
    _registered = True


class RegisterWhenTVMLoads(importlib.abc.MetaPathFinder):
    """Import hook: once ``tvm.relax.pipeline`` has executed, :func:`register` with it."""

    def find_spec(self, name, path, target=None):
        if name != _RELAX_PIPELINE_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None
        execute = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            execute(module)
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            register(module)

        spec.loader.exec_module = exec_module
        return spec


def register_now_or_when_tvm_loads() -> None:
    """What ``import tvm_intsmooth`` does: register if TVM's pipeline module is loaded, else
    install the import hook (once)."""
    if _RELAX_PIPELINE_MODULE in sys.modules:
        register()
    elif not any(isinstance(f, RegisterWhenTVMLoads) for f in sys.meta_path):
        sys.meta_path.insert(0, RegisterWhenTVMLoads())
