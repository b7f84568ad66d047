"""CountVotes: B logits rows -> int32 vote counts per class, computed inside the graph.

Before: ``main(*inputs) -> int32[B, K]`` (the noisy logits of InjectIntegerNoise). After::

    main(*inputs, valid: int64[1]) -> int32[K]
        pred  = argmax(logits, axis=1)                  # ties go to the lowest class index
        votes = sum((pred == k) and (row < valid[0]), axis=0)

``valid`` counts only the first ``valid`` rows of the batch, so the host can ask for any number
of samples with a fixed compiled batch size.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax import op as R

from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.transform.wrap_main import wrap_main


@tvm.transform.module_pass(opt_level=0, name="CountVotes")
class CountVotes:
    """Replace the logits output of ``main`` by the per-class vote counts of its rows."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        func = mod["main"]
        ret = func.ret_ty
        if not isinstance(ret, relax.TensorType) or ret.ndim != 2 or "int" not in str(ret.dtype):
            raise IntSmoothError(f"CountVotes needs integer [B, K] logits, got {ret}")
        batch, classes = (int(d) for d in ret.shape)
        params = [relax.Var(p.name, p.ty) for p in func.params]
        valid = relax.Var("valid", relax.TensorType([1], "int64"))

        def body(bb: relax.BlockBuilder, inner: tvm.ir.GlobalVar) -> relax.Expr:
            logits = bb.emit(relax.Call(inner, params), "logits")
            pred = bb.emit(R.reshape(R.argmax(logits, axis=1), [batch, 1]), "prediction")
            classes_row = relax.const(
                np.arange(classes, dtype=np.int64).reshape(1, classes), "int64"
            )
            rows = relax.const(np.arange(batch, dtype=np.int64).reshape(batch, 1), "int64")
            hit = bb.emit(R.equal(pred, classes_row))
            counted = bb.emit(R.logical_and(hit, R.less(rows, valid)))
            return bb.emit(R.sum(R.astype(counted, "int32"), axis=[0]), "votes")

        return wrap_main(mod, [*params, valid], body)
