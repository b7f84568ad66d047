"""One small ONNX classifier per layer kind of issue 19 (onnx.helper, random He weights), for the
integer rewrites' end-to-end tests: each puts the layer between convolutions so that it sees an
int8 (or int32) activation as in a real network."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper
from onnx_models import GraphBuilder

SHAPE = (3, 12, 12)


def _start(seed: int) -> tuple[GraphBuilder, str]:
    g = GraphBuilder(SHAPE, seed=seed)
    x = g.normalize("input", [0.5, 0.4, 0.3], [0.25, 0.3, 0.2])
    return g, g.conv(x, 8)


def _finish(g: GraphBuilder, x: str, final: str | None = None) -> onnx.ModelProto:
    x = g.global_avg_pool(g.relu(g.conv(x, 12)))
    out = g.gemm(g.flatten(x), 5)
    if final:
        out = g.node(final, [out], g.shapes[out], axis=1)
    return g.build(out)


def _unary(op: str, **attrs):
    def make(seed: int) -> onnx.ModelProto:
        g, x = _start(seed)
        return _finish(g, g.node(op, [x], g.shapes[x], **attrs))

    return make


def concat(seed: int) -> onnx.ModelProto:
    """Two branches (a ReLU and a 1x1 conv of different ranges) concatenated on channels."""
    g, x = _start(seed)
    a = g.relu(g.conv(x, 4, k=1, pad=0))
    b = g.conv(x, 6, k=3)
    c, h, w = g.shapes[a]
    return _finish(g, g.node("Concat", [a, b], (10, h, w), axis=1))


def squeeze_excitation(seed: int) -> onnx.ModelProto:
    """x * HardSigmoid(conv(relu(conv(mean(x))))): the gate multiplies two activations."""
    g, x = _start(seed)
    x = g.relu(x)
    s = g.node("ReduceMean", [x], (8, 1, 1), axes=[-2, -1], keepdims=1)
    s = g.relu(g.conv(s, 4, k=1, pad=0))
    s = g.node("HardSigmoid", [g.conv(s, 8, k=1, pad=0)], (8, 1, 1), alpha=1 / 6, beta=0.5)
    return _finish(g, g.node("Mul", [x, s], g.shapes[x]))


def silu(seed: int) -> onnx.ModelProto:
    """x * Sigmoid(x), as ONNX exporters write SiLU."""
    g, x = _start(seed)
    return _finish(g, g.node("Mul", [x, g.node("Sigmoid", [x], g.shapes[x])], g.shapes[x]))


def prelu(seed: int) -> onnx.ModelProto:
    g, x = _start(seed)
    slope = g.const(np.linspace(-0.2, 0.5, 8).astype(np.float32).reshape(8, 1, 1), "slope")
    return _finish(g, g.node("PRelu", [x, slope], g.shapes[x]))


def pools(seed: int) -> onnx.ModelProto:
    """MaxPool with padding and ceil mode, AveragePool excluding padding with ceil mode,
    AveragePool with auto_pad=SAME_UPPER, a Conv with auto_pad=SAME_UPPER."""
    g, x = _start(seed)
    x = g.node(
        "MaxPool", [x], (8, 7, 7), kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4, ceil_mode=1
    )
    x = g.node(
        "AveragePool",
        [x],
        (8, 4, 4),
        kernel_shape=[3, 3],
        strides=[2, 2],
        pads=[1] * 4,
        ceil_mode=1,
        count_include_pad=0,
    )
    x = g.node(
        "AveragePool", [x], (8, 2, 2), kernel_shape=[2, 2], strides=[2, 2], auto_pad="SAME_UPPER"
    )
    w = g.const(g.rng.normal(0, 0.5, (8, 8, 2, 2)).astype(np.float32), "w")
    x = g.node("Conv", [x, w], (8, 2, 2), kernel_shape=[2, 2], auto_pad="SAME_UPPER")
    return _finish(g, x)


def reduce_max(seed: int) -> onnx.ModelProto:
    """GlobalMaxPool and a ReduceMean over the channel axis kept as a feature."""
    g, x = _start(seed)
    x = g.relu(x)
    m = g.node("GlobalMaxPool", [x], (8, 1, 1))
    mean = g.node("ReduceMean", [x], (1, 12, 12), axes=[1], keepdims=1)
    flat = g.flatten(g.node("Mul", [m, g.global_avg_pool(mean)], (8, 1, 1)))
    return g.build(g.gemm(flat, 5))


def softmax_head(seed: int) -> onnx.ModelProto:
    g, x = _start(seed)
    return _finish(g, g.relu(x), final="Softmax")


def subtract_branches(seed: int) -> onnx.ModelProto:
    g, x = _start(seed)
    a = g.relu(g.conv(x, 8, k=1, pad=0))
    return _finish(g, g.node("Sub", [a, g.relu(x)], g.shapes[x]))


LAYER_MODELS = {
    "concat": concat,
    "squeeze_excitation": squeeze_excitation,
    "hardswish": _unary("HardSwish"),
    "leaky_relu": _unary("LeakyRelu", alpha=0.1),
    "prelu": prelu,
    "sigmoid": _unary("Sigmoid"),
    "tanh": _unary("Tanh"),
    "silu": silu,
    "pools": pools,
    "reduce_max": reduce_max,
    "softmax_head": softmax_head,
    "subtract": subtract_branches,
}


def with_opset(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.opset_import[:]
    out.opset_import.extend([helper.make_opsetid("", opset)])
    return out
