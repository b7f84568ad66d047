"""TVM's own tensor intrinsic modules, loaded one by one.

``import tvm.s_tir.tensor_intrin`` parses every intrinsic TVM ships (CUDA, ROCm, Hexagon...):
about a minute of CPU. The x86 and arm_cpu modules alone take a second or two. Loading them under
their own module names also makes a later full import (MetaSchedule's TuneContext does one) skip
them, so the intrinsics that :mod:`.x86` re-registers are not registered a second time over ours.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import tvm.s_tir

_PACKAGE = "tvm.s_tir.tensor_intrin"


def load_stock(name: str) -> ModuleType:
    """``tvm.s_tir.tensor_intrin.<name>``, executed without the package's other modules."""
    full = f"{_PACKAGE}.{name}"
    if full not in sys.modules:
        path = f"{tvm.s_tir.__path__[0]}/tensor_intrin/{name}.py"
        spec = importlib.util.spec_from_file_location(full, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[full] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[full]
            raise
    return sys.modules[full]
