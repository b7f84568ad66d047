"""matmul: activations [N, K] x constant weights [K, O] -> int32, per-output-channel scale."""

from __future__ import annotations

import numpy as np
from tvm import relax
from tvm.relax import op as R

from tvm_intsmooth.quantize.ops.weights import const_weight, quantize_weight
from tvm_intsmooth.quantize.rewriter import RewriteContext, handles
from tvm_intsmooth.quantize.states import Acc, Affine, Const, State


@handles("relax.matmul")
def matmul(ctx: RewriteContext, call: relax.Call, args: list[State], name: str) -> State:
    data, weight = args
    if not isinstance(weight, Const) or weight.value.ndim != 2:
        raise ctx.fail(call, "is not activations @ a constant 2-D weight.")
    if isinstance(data, Affine):
        features = int(data.expr.ty.shape[1])
        a = np.broadcast_to(data.a, (features,)).astype(np.float64)
        c = np.broadcast_to(data.c, (features,)).astype(np.float64)
        w = weight.value.astype(np.float64)
        q, w_scale = quantize_weight(w * a[:, None], 1)
        acc = ctx.emit(R.matmul(data.expr, relax.const(q, "int8"), out_dtype="int32"))
        bias = np.round((c @ w) / w_scale).astype(np.int32).reshape(1, -1)
        acc = ctx.emit(R.add(acc, relax.const(bias, "int32")), name)
        return Acc(acc, w_scale, name)
    x = ctx.materialize(data, call)
    q, w_scale = const_weight(weight, 1)
    acc = ctx.emit(R.matmul(x.expr, relax.const(q, "int8"), out_dtype="int32"), name)
    return Acc(acc, x.scale * w_scale, name)
