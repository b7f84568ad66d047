"""A numpy interpreter of integer Relax graphs: the reference for the compiled models.

It evaluates a Relax function binding by binding from the operators' definitions in numpy (not
from TVM's lowering): every integer operator is computed in int64, where the classifier's sums
cannot overflow, and the result is cast to the binding's declared dtype. Floating-point tensors
are refused, so anything that passes through it is integer-only. ``call_tir`` calls are evaluated
by numpy implementations registered by the PrimFunc's name (``externs``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import tvm
from tvm import relax

from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.reference import numpy_ops

OpImpl = Callable[[relax.Call, list, Callable], np.ndarray]
OPS: dict[str, OpImpl] = {}


def _op(*names: str):
    def register(fn: OpImpl) -> OpImpl:
        for name in names:
            OPS[name] = fn
        return fn

    return register


def _wide(x: np.ndarray) -> np.ndarray:
    if x.dtype.kind not in "iub":
        raise IntSmoothError(f"reference interpreter: floating-point tensor of dtype {x.dtype}")
    return x.astype(np.int64)


def _ints(values) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


_BINARY = {
    "relax.add": np.add,
    "relax.subtract": np.subtract,
    "relax.multiply": np.multiply,
    "relax.right_shift": np.right_shift,
    "relax.left_shift": np.left_shift,
    "relax.bitwise_and": np.bitwise_and,
    "relax.bitwise_or": np.bitwise_or,
    "relax.bitwise_xor": np.bitwise_xor,
    "relax.maximum": np.maximum,
    "relax.minimum": np.minimum,
    "relax.floor_divide": np.floor_divide,
    "relax.equal": np.equal,
    "relax.less": np.less,
    "relax.less_equal": np.less_equal,
    "relax.greater": np.greater,
    "relax.greater_equal": np.greater_equal,
    "relax.logical_and": np.logical_and,
}


@_op(*_BINARY)
def _binary(call, args, _shape):
    return _BINARY[call.op.name](_wide(args[0]), _wide(args[1]))


@_op("relax.astype")
def _astype(call, args, _shape):
    return args[0]


@_op("relax.clip")
def _clip(call, args, _shape):
    lo, hi = (call.args[i].value for i in (1, 2))
    return np.clip(_wide(args[0]), int(lo), int(hi))


@_op("relax.negative")
def _negative(call, args, _shape):
    return -_wide(args[0])


@_op("relax.take")
def _take(call, args, _shape):
    """Gather along an axis; out-of-range indices are an error (a lookup table is indexed by
    int8 + 128, always in 0..255)."""
    axis = 0 if call.attrs.axis is None else int(call.attrs.axis)
    table, index = args[0], _wide(args[1])
    if index.min() < 0 or index.max() >= table.shape[axis]:
        raise IntSmoothError(f"reference interpreter: take index out of range {table.shape}")
    return np.take(table, index, axis=axis)


@_op("relax.concat")
def _concat(call, args, _shape):
    (parts,) = args
    return np.concatenate([_wide(p) for p in parts], axis=int(call.attrs.axis))


@_op("relax.min")
def _min(call, args, _shape):
    axis = None if call.attrs.axis is None else _ints(call.attrs.axis)
    return _wide(args[0]).min(axis=axis, keepdims=bool(call.attrs.keepdims))


@_op("relax.nn.relu")
def _relu(call, args, _shape):
    return np.maximum(_wide(args[0]), 0)


@_op("relax.nn.conv2d")
def _conv2d(call, args, _shape):
    a = call.attrs
    return numpy_ops.conv2d(
        _wide(args[0]),
        _wide(args[1]),
        _ints(a.strides),
        _ints(a.padding),
        _ints(a.dilation),
        int(a.groups),
    )


@_op("relax.matmul")
def _matmul(call, args, _shape):
    return np.matmul(_wide(args[0]), _wide(args[1]))


@_op("relax.nn.max_pool2d")
def _max_pool2d(call, args, _shape):
    a = call.attrs
    return numpy_ops.pool2d(
        args[0],
        "max",
        _ints(a.pool_size),
        _ints(a.strides),
        _ints(a.padding),
        _ints(a.dilation),
        bool(a.ceil_mode),
    )


@_op("relax.sum")
def _sum(call, args, _shape):
    axis = None if call.attrs.axis is None else _ints(call.attrs.axis)
    return _wide(args[0]).sum(axis=axis, keepdims=bool(call.attrs.keepdims))


@_op("relax.max")
def _max(call, args, _shape):
    axis = None if call.attrs.axis is None else _ints(call.attrs.axis)
    return _wide(args[0]).max(axis=axis, keepdims=bool(call.attrs.keepdims))


@_op("relax.argmax")
def _argmax(call, args, _shape):
    axis = None if call.attrs.axis is None else int(call.attrs.axis)
    return np.argmax(_wide(args[0]), axis=axis, keepdims=bool(call.attrs.keepdims))


@_op("relax.reshape")
def _reshape(call, args, shape):
    return args[0].reshape(shape)


@_op("relax.broadcast_to")
def _broadcast_to(call, args, shape):
    return np.broadcast_to(args[0], shape)


@_op("relax.repeat")
def _repeat(call, args, _shape):
    return np.repeat(args[0], int(call.attrs.repeats), axis=int(call.attrs.axis))


@_op("relax.where")
def _where(call, args, _shape):
    return np.where(args[0].astype(bool), _wide(args[1]), _wide(args[2]))


_TENSOR_EXPRS = (relax.Var, tvm.ir.GenericConst, relax.Tuple, relax.TupleGetItem)


def _eval_prim(expr, env: Mapping[str, int]) -> int:
    if isinstance(expr, int):
        return expr
    if isinstance(expr, tvm.tirx.IntImm):
        return int(expr.value)
    if isinstance(expr, tvm.tirx.Var):
        return env[expr.name]
    ops = {"Add": int.__add__, "Sub": int.__sub__, "Mul": int.__mul__, "FloorDiv": int.__floordiv__}
    kind = type(expr).__name__
    if kind in ops:
        return ops[kind](_eval_prim(expr.a, env), _eval_prim(expr.b, env))
    raise IntSmoothError(f"reference interpreter: cannot evaluate shape expression {expr}")


def _evaluate_call(var, call: relax.Call, evaluate, env, externs) -> np.ndarray:
    """One binding's call, cast to the binding's declared dtype."""
    ty = var.ty
    shape = tuple(_eval_prim(d, env) for d in ty.shape) if hasattr(ty, "shape") else None
    if call.op.name == "relax.call_tir":
        name = call.args[0].name_hint
        if name not in externs:
            raise IntSmoothError(f"reference interpreter: no numpy model for {name}")
        result = externs[name](*evaluate(call.args[1]))
    elif call.op.name in OPS:
        tensors = [evaluate(a) for a in call.args if isinstance(a, _TENSOR_EXPRS)]
        result = OPS[call.op.name](call, tensors, shape)
    else:
        raise IntSmoothError(f"reference interpreter: unsupported operator {call.op.name}")
    result = np.asarray(result)
    if hasattr(ty, "dtype"):
        if "float" in str(ty.dtype):
            raise IntSmoothError(f"reference interpreter: {var.name} is {ty.dtype}")
        result = result.astype(str(ty.dtype)).reshape(shape)
    return result


def interpret(
    mod: tvm.IRModule | relax.Function,
    *inputs: np.ndarray,
    func_name: str = "main",
    externs: Mapping[str, Callable[..., np.ndarray]] | None = None,
):
    """Evaluate an integer Relax function on numpy inputs; returns numpy array(s)."""
    func = mod[func_name] if isinstance(mod, tvm.IRModule) else mod
    externs = dict(externs or {})
    env: dict[str, int] = {}
    values: dict[relax.Var, object] = {}
    for param, value in zip(func.params, inputs, strict=True):
        for dim, size in zip(param.ty.shape, value.shape, strict=True):
            if isinstance(dim, tvm.tirx.Var):
                env[dim.name] = int(size)
        values[param] = np.asarray(value)

    def evaluate(expr: relax.Expr):
        if isinstance(expr, relax.Var):
            return values[expr]
        if isinstance(expr, tvm.ir.GenericConst):
            return expr.value.numpy()
        if isinstance(expr, relax.Tuple):
            return tuple(evaluate(f) for f in expr.fields)
        if isinstance(expr, relax.TupleGetItem):
            return evaluate(expr.tuple_value)[expr.index]
        raise IntSmoothError(f"reference interpreter: unsupported expression {type(expr).__name__}")

    for block in func.body.blocks:
        for binding in block.bindings:
            var, value = binding.var, binding.value
            if not isinstance(value, relax.Call):
                values[var] = evaluate(value)
                continue
            values[var] = _evaluate_call(var, value, evaluate, env, externs)
    return evaluate(func.body.body)
