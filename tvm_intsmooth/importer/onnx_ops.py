"""One converter per ONNX operator, registered by op type.

A converter takes the node and returns a Relax expression (emitted by the importer under the
node's output name), a numpy array (for values computable from initializers alone), or a tuple of
those for multi-output nodes. Constants stay numpy arrays until an operator needs them in the
graph, so constant subgraphs (shape arithmetic, BatchNorm folding) are evaluated at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper
from tvm import relax, tirx
from tvm.relax import op as R

from tvm_intsmooth.errors import UnsupportedModelError

Value = relax.Expr | np.ndarray


@dataclass
class ConvertContext:
    """State shared by the converters while one graph is imported."""

    bb: relax.BlockBuilder
    batch: tirx.Var
    where: str
    values: dict[str, Value] = field(default_factory=dict)
    # Convolutions/dense layers with numpy weights, by output name, so a following
    # BatchNormalization can be folded into them: name -> (kind, input, weight, bias, attrs)
    foldable: dict[str, tuple] = field(default_factory=dict)
    # Dequantized int8 constants (QDQ weights), by output name: their R.dequantize expression,
    # used where they are a layer's weights so that the quantizer sees the exact integers.
    dequantized: dict[str, relax.Expr] = field(default_factory=dict)

    def get(self, node: onnx.NodeProto, i: int) -> Value | None:
        if i >= len(node.input) or not node.input[i]:
            return None
        return self.values[node.input[i]]

    def weight(self, node: onnx.NodeProto, i: int) -> Value | None:
        """A layer's weight: the exact QDQ form if it is a dequantized constant."""
        name = node.input[i] if i < len(node.input) else ""
        if name in self.dequantized:
            expr = self.dequantized[name]
            if not isinstance(expr, relax.Var):
                expr = self.dequantized[name] = self.bb.emit(expr, name_hint=f"{_safe(name)}_w")
            return expr
        return self.get(node, i)

    def expr(self, value: Value) -> relax.Expr:
        if isinstance(value, np.ndarray):
            dtype = "float32" if value.dtype.kind == "f" else str(value.dtype)
            return relax.const(value.astype(dtype), dtype)
        return value

    def fail(self, node: onnx.NodeProto, why: str) -> UnsupportedModelError:
        return UnsupportedModelError(
            f"ONNX model {self.where}: node {node.name or node.output[0]!r} ({node.op_type}) {why}"
        )


CONVERTERS: dict[str, Callable[[ConvertContext, onnx.NodeProto], object]] = {}


def converter(*op_types: str):
    """Register a converter for the given ONNX op types."""

    def register(fn):
        for op_type in op_types:
            CONVERTERS[op_type] = fn
        return fn

    return register


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _static_shape(ctx: ConvertContext, value: Value) -> list[int]:
    if isinstance(value, np.ndarray):
        return list(value.shape)
    return [ctx.batch if i == 0 else int(d) for i, d in enumerate(value.ty.shape)]


def _pads_2d(ctx: ConvertContext, node: onnx.NodeProto, attrs: dict) -> tuple[int, int, int, int]:
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad not in ("NOTSET", "VALID"):
        raise ctx.fail(node, f"uses auto_pad={auto_pad}; re-export with explicit pads.")
    pads = list(attrs.get("pads", [0, 0, 0, 0])) if auto_pad == "NOTSET" else [0, 0, 0, 0]
    if len(pads) != 4:
        raise ctx.fail(node, f"has {len(pads)} pads; only 2-D (NCHW) operators are supported.")
    top, left, bottom, right = pads
    return (top, left, bottom, right)


@converter("Conv")
def _conv(ctx: ConvertContext, node: onnx.NodeProto):
    attrs = _attrs(node)
    x, w, b = ctx.get(node, 0), ctx.weight(node, 1), ctx.get(node, 2)
    if isinstance(x, np.ndarray):
        raise ctx.fail(node, "has a constant input; only the image may feed a Conv.")
    w_shape = _static_shape(ctx, w)
    if len(w_shape) != 4:
        raise ctx.fail(node, f"has a {len(w_shape) - 2}-D kernel; only Conv2D is supported.")
    conv_attrs = {
        "strides": tuple(attrs.get("strides", [1, 1])),
        "padding": _pads_2d(ctx, node, attrs),
        "dilation": tuple(attrs.get("dilations", [1, 1])),
        "groups": int(attrs.get("group", 1)),
    }
    if isinstance(w, np.ndarray):
        bias = np.zeros(w.shape[0], np.float32) if b is None else np.asarray(b, np.float32)
        ctx.foldable[node.output[0]] = ("conv", x, w.astype(np.float32), bias, conv_attrs)
    return _emit_conv(ctx, x, w, b, conv_attrs, node.output[0])


def _emit_conv(ctx, x, w, b, conv_attrs, name):
    out = R.nn.conv2d(x, ctx.expr(w), **conv_attrs)
    if b is None:
        return out
    conv = ctx.bb.emit(out, name_hint=f"{_safe(name)}_conv")
    bias = b.reshape(1, -1, 1, 1) if isinstance(b, np.ndarray) else R.reshape(b, (1, -1, 1, 1))
    return R.add(conv, ctx.expr(bias))


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def _emit_dense(ctx, x, w_ko, bias, name):
    out = R.matmul(x, ctx.expr(w_ko))
    if bias is None:
        return out
    mm = ctx.bb.emit(out, name_hint=f"{_safe(name)}_matmul")
    return R.add(mm, ctx.expr(bias))


@converter("Gemm")
def _gemm(ctx: ConvertContext, node: onnx.NodeProto):
    attrs = _attrs(node)
    x, w, c = ctx.get(node, 0), ctx.weight(node, 1), ctx.get(node, 2)
    if attrs.get("transA", 0):
        raise ctx.fail(node, "has transA=1; only x @ W with x the activations is supported.")
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    if isinstance(w, np.ndarray):
        w_ko = (w.T if attrs.get("transB", 0) else w).astype(np.float32) * alpha
        bias = None if c is None else (np.asarray(c, np.float32) * beta).reshape(-1)
        if bias is not None:
            ctx.foldable[node.output[0]] = ("dense", x, w_ko, bias, {})
        return _emit_dense(ctx, x, w_ko, bias, node.output[0])
    if alpha != 1.0 or (c is not None and beta != 1.0):
        raise ctx.fail(node, "scales a non-constant weight by alpha/beta; fold them first.")
    w_ko = R.permute_dims(w) if attrs.get("transB", 0) else w
    return _emit_dense(ctx, x, w_ko, c, node.output[0])


@converter("MatMul")
def _matmul(ctx: ConvertContext, node: onnx.NodeProto):
    x, w = ctx.get(node, 0), ctx.weight(node, 1)
    if isinstance(x, np.ndarray) or len(_static_shape(ctx, w)) != 2:
        raise ctx.fail(node, "is not activations @ a 2-D weight matrix.")
    return _emit_dense(ctx, x, w, None, node.output[0])


@converter("BatchNormalization")
def _batch_norm(ctx: ConvertContext, node: onnx.NodeProto):
    attrs = _attrs(node)
    x = ctx.get(node, 0)
    gamma, beta, mean, var = (np.asarray(ctx.get(node, i), np.float64) for i in range(1, 5))
    scale = gamma / np.sqrt(var + float(attrs.get("epsilon", 1e-5)))
    shift = beta - mean * scale
    producer = ctx.foldable.pop(node.input[0], None)
    if producer is not None:
        kind, src, w, bias, conv_attrs = producer
        if kind == "conv":
            w = (w * scale.reshape(-1, 1, 1, 1)).astype(np.float32)
            b = (bias * scale + shift).astype(np.float32)
            ctx.foldable[node.output[0]] = ("conv", src, w, b, conv_attrs)
            return _emit_conv(ctx, src, w, b, conv_attrs, node.output[0])
        w = (w * scale.reshape(1, -1)).astype(np.float32)
        b = (bias * scale + shift).astype(np.float32)
        return _emit_dense(ctx, src, w, b, node.output[0])
    rank = len(_static_shape(ctx, x))
    bshape = (1, -1) + (1,) * (rank - 2)
    scaled = ctx.bb.emit(R.multiply(x, ctx.expr(scale.astype(np.float32).reshape(bshape))))
    return R.add(scaled, ctx.expr(shift.astype(np.float32).reshape(bshape)))


@converter("Relu")
def _relu(ctx, node):
    return R.nn.relu(ctx.get(node, 0))


@converter("Clip")
def _clip(ctx, node):
    attrs = _attrs(node)
    lo, hi = ctx.get(node, 1), ctx.get(node, 2)
    lo = float(lo) if lo is not None else float(attrs.get("min", -np.inf))
    hi = float(hi) if hi is not None else float(attrs.get("max", np.inf))
    return R.clip(ctx.get(node, 0), lo, hi)


_BINARY = {
    "Add": (R.add, np.add),
    "Sub": (R.subtract, np.subtract),
    "Mul": (R.multiply, np.multiply),
    "Div": (R.divide, np.divide),
}


@converter(*_BINARY)
def _binary(ctx, node):
    a, b = ctx.get(node, 0), ctx.get(node, 1)
    relax_fn, numpy_fn = _BINARY[node.op_type]
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return numpy_fn(a, b)
    return relax_fn(ctx.expr(a), ctx.expr(b))


def _pool_attrs(ctx, node, attrs):
    return {
        "pool_size": tuple(attrs["kernel_shape"]),
        "strides": tuple(attrs.get("strides", [1, 1])),
        "padding": _pads_2d(ctx, node, attrs),
        "dilation": tuple(attrs.get("dilations", [1, 1])),
        "ceil_mode": bool(attrs.get("ceil_mode", 0)),
    }


@converter("MaxPool")
def _max_pool(ctx, node):
    if len(node.output) > 1 and node.output[1]:
        raise ctx.fail(node, "returns indices; only the pooled values are supported.")
    return R.nn.max_pool2d(ctx.get(node, 0), **_pool_attrs(ctx, node, _attrs(node)))


@converter("AveragePool")
def _avg_pool(ctx, node):
    attrs = _attrs(node)
    return R.nn.avg_pool2d(
        ctx.get(node, 0),
        **_pool_attrs(ctx, node, attrs),
        count_include_pad=bool(attrs.get("count_include_pad", 0)),
    )


@converter("GlobalAveragePool")
def _global_avg_pool(ctx, node):
    return R.mean(ctx.get(node, 0), axis=[2, 3], keepdims=True)


@converter("Flatten")
def _flatten(ctx, node):
    x = ctx.get(node, 0)
    if int(_attrs(node).get("axis", 1)) != 1:
        raise ctx.fail(node, "flattens from an axis other than 1; only N x rest is supported.")
    if isinstance(x, np.ndarray):
        return x.reshape(x.shape[0], -1)
    rest = int(np.prod(_static_shape(ctx, x)[1:]))
    return R.reshape(x, relax.ShapeExpr([ctx.batch, rest]))


@converter("Reshape")
def _reshape(ctx, node):
    x, shape = ctx.get(node, 0), ctx.get(node, 1)
    if not isinstance(shape, np.ndarray):
        raise ctx.fail(
            node, "has a shape computed at run time; only constant shapes are supported."
        )
    if isinstance(x, np.ndarray):
        return x.reshape([d if d != 0 else x.shape[i] for i, d in enumerate(shape)])
    in_shape = _static_shape(ctx, x)
    dims = [int(d) for d in shape]
    if not dims or dims[0] not in (0, -1) and dims[0] != 1:
        raise ctx.fail(node, f"reshapes to {dims}, which changes the batch dimension.")
    rest = [in_shape[i] if d == 0 else d for i, d in enumerate(dims[1:], start=1)]
    total = int(np.prod(in_shape[1:]))
    if rest.count(-1) > 1:
        raise ctx.fail(node, f"reshapes to {dims} with more than one -1.")
    if -1 in rest:
        known = int(np.prod([d for d in rest if d != -1]))
        rest[rest.index(-1)] = total // known
    if int(np.prod(rest)) != total:
        raise ctx.fail(node, f"reshapes {in_shape} to {dims}: element counts differ.")
    return R.reshape(x, relax.ShapeExpr([ctx.batch, *rest]))


@converter("Identity", "Dropout")
def _identity(ctx, node):
    x = ctx.get(node, 0)
    return (x, None) if len(node.output) > 1 else x


@converter("Constant")
def _constant(ctx, node):
    attrs = _attrs(node)
    if "value" in attrs:
        value = numpy_helper.to_array(attrs["value"])
        if value.dtype.kind in "fc" and not np.all(np.isfinite(value)):
            raise ctx.fail(node, "holds NaN or infinite values; re-export from finite weights.")
        return value
    for key in ("value_float", "value_int"):
        if key in attrs:
            return np.asarray(attrs[key])
    for key in ("value_floats", "value_ints"):
        if key in attrs:
            return np.asarray(list(attrs[key]))
    raise ctx.fail(node, "holds a sparse or string constant.")


def _qparams(ctx, node):
    scale, zero_point = ctx.get(node, 1), ctx.get(node, 2)
    if not isinstance(scale, np.ndarray) or not (
        zero_point is None or isinstance(zero_point, np.ndarray)
    ):
        raise ctx.fail(node, "has a run-time scale or zero point; QDQ parameters must be constant.")
    zero_point = np.zeros((), np.uint8) if zero_point is None else zero_point
    axis = int(_attrs(node).get("axis", 1))
    return np.asarray(scale, np.float32), zero_point, axis


def _broadcast_param(param: np.ndarray, rank: int, axis: int) -> np.ndarray:
    if param.ndim == 0 or param.size == 1:
        return param.reshape(())
    shape = [1] * rank
    shape[axis] = -1
    return param.reshape(shape)


@converter("QuantizeLinear")
def _quantize_linear(ctx, node):
    x = ctx.get(node, 0)
    scale, zero_point, axis = _qparams(ctx, node)
    if isinstance(x, np.ndarray):
        s = _broadcast_param(scale, x.ndim, axis)
        zp = _broadcast_param(zero_point, x.ndim, axis).astype(np.int64)
        info = np.iinfo(zero_point.dtype)
        q = np.clip(np.round(x / s) + zp, info.min, info.max)
        return q.astype(zero_point.dtype)
    axis = axis if scale.size > 1 else -1
    return R.quantize(
        x, ctx.expr(scale), ctx.expr(zero_point), axis=axis, out_dtype=str(zero_point.dtype)
    )


@converter("DequantizeLinear")
def _dequantize_linear(ctx, node):
    x = ctx.get(node, 0)
    scale, zero_point, axis = _qparams(ctx, node)
    if not isinstance(x, np.ndarray):
        axis = axis if scale.size > 1 else -1
        return R.dequantize(x, ctx.expr(scale), ctx.expr(zero_point), axis=axis)
    s = _broadcast_param(scale, x.ndim, axis)
    zp = _broadcast_param(zero_point, x.ndim, axis).astype(np.float64)
    if x.dtype in (np.int8, np.uint8):
        ctx.dequantized[node.output[0]] = R.dequantize(
            ctx.expr(x),
            ctx.expr(scale),
            ctx.expr(zero_point.astype(x.dtype)),
            axis=axis if scale.size > 1 else -1,
        )
    return ((x.astype(np.float64) - zp) * s).astype(np.float32)
