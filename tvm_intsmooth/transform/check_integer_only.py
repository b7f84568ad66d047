"""CheckIntegerOnly: fail on any floating-point dtype or operator left in the module."""

from __future__ import annotations

import tvm

from tvm_intsmooth.analysis.check_integer_only import check_integer_only
from tvm_intsmooth.errors import IntSmoothError


@tvm.transform.module_pass(opt_level=0, name="CheckIntegerOnly")
class CheckIntegerOnly:
    """Run :func:`tvm_intsmooth.check_integer_only` and raise an IntSmoothError listing every
    floating-point occurrence; the module passes through unchanged.

    An exception raised inside ``tvm.compile`` reaches the caller through TVM's FFI; ``errors``
    (when given) also receives the original error, for callers that re-raise it as it was.
    """

    def __init__(self, errors: list[IntSmoothError] | None = None):
        self.errors = errors

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        try:
            check_integer_only(mod, raise_on_error=True)
        except IntSmoothError as err:
            if self.errors is not None:
                self.errors.append(err)
            raise
        return mod
