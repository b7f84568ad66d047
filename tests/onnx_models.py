"""Small ONNX classifiers built with onnx.helper, for the end-to-end tests."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class GraphBuilder:
    """Append nodes to a float ONNX graph with random He-initialised weights."""

    def __init__(self, input_shape: tuple[int, ...], seed: int = 0, batch: str | int = "N"):
        self.rng = np.random.default_rng(seed)
        self.input_shape = input_shape
        self.batch = batch
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.shapes: dict[str, tuple[int, ...]] = {"input": input_shape}
        self.count = 0

    def _name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def const(self, value: np.ndarray, prefix: str = "c") -> str:
        name = self._name(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], shape: tuple[int, ...], **attrs) -> str:
        out = self._name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        self.shapes[out] = shape
        return out

    def normalize(self, x: str, mean: list[float], std: list[float]) -> str:
        shape = (1, len(mean), 1, 1)
        m = self.const(np.array(mean, np.float32).reshape(shape))
        s = self.const(np.array(std, np.float32).reshape(shape))
        sub = self.node("Sub", [x, m], self.shapes[x])
        return self.node("Div", [sub, s], self.shapes[x])

    def conv(self, x, cout, k=3, stride=1, pad=1, group=1, bias=True) -> str:
        cin, h, w = self.shapes[x]
        fan_in = cin // group * k * k
        weight = self.rng.normal(0, np.sqrt(2 / fan_in), (cout, cin // group, k, k))
        inputs = [x, self.const(weight.astype(np.float32), "w")]
        if bias:
            inputs.append(self.const(self.rng.normal(0, 0.1, cout).astype(np.float32), "b"))
        ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        return self.node(
            "Conv",
            inputs,
            (cout, ho, wo),
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[pad] * 4,
            group=group,
        )

    def batch_norm(self, x) -> str:
        c = self.shapes[x][0]
        params = [
            self.rng.uniform(0.5, 1.5, c),
            self.rng.normal(0, 0.1, c),
            self.rng.normal(0, 0.1, c),
            self.rng.uniform(0.5, 1.5, c),
        ]
        names = [self.const(p.astype(np.float32), "bn") for p in params]
        return self.node("BatchNormalization", [x, *names], self.shapes[x], epsilon=1e-5)

    def relu(self, x) -> str:
        return self.node("Relu", [x], self.shapes[x])

    def clip(self, x, lo=0.0, hi=6.0) -> str:
        return self.node(
            "Clip", [x, self.const(np.float32(lo)), self.const(np.float32(hi))], self.shapes[x]
        )

    def add(self, a, b) -> str:
        return self.node("Add", [a, b], self.shapes[a])

    def max_pool(self, x, k=2, stride=2, pad=0, ceil_mode=0) -> str:
        c, h, w = self.shapes[x]
        size = [(d + 2 * pad - k + (stride - 1) * ceil_mode) // stride + 1 for d in (h, w)]
        return self.node(
            "MaxPool",
            [x],
            (c, *size),
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[pad] * 4,
            **({"ceil_mode": 1} if ceil_mode else {}),
        )

    def avg_pool(self, x, k=2, stride=2) -> str:
        c, h, w = self.shapes[x]
        return self.node(
            "AveragePool",
            [x],
            (c, (h - k) // stride + 1, (w - k) // stride + 1),
            kernel_shape=[k, k],
            strides=[stride, stride],
        )

    def global_avg_pool(self, x) -> str:
        return self.node("GlobalAveragePool", [x], (self.shapes[x][0], 1, 1))

    def flatten(self, x) -> str:
        return self.node("Flatten", [x], (int(np.prod(self.shapes[x])),), axis=1)

    def reshape(self, x) -> str:
        shape = self.const(np.array([-1, int(np.prod(self.shapes[x]))], np.int64), "shape")
        return self.node("Reshape", [x, shape], (int(np.prod(self.shapes[x])),))

    def gemm(self, x, nout, trans_b=True) -> str:
        (k,) = self.shapes[x]
        weight = self.rng.normal(0, np.sqrt(2 / k), (nout, k) if trans_b else (k, nout))
        bias = self.rng.normal(0, 0.1, nout)
        return self.node(
            "Gemm",
            [
                x,
                self.const(weight.astype(np.float32), "w"),
                self.const(bias.astype(np.float32), "b"),
            ],
            (nout,),
            transB=int(trans_b),
        )

    def matmul(self, x, nout) -> str:
        (k,) = self.shapes[x]
        weight = self.rng.normal(0, np.sqrt(2 / k), (k, nout)).astype(np.float32)
        return self.node("MatMul", [x, self.const(weight, "w")], (nout,))

    def build(self, out: str, opset: int = 17) -> onnx.ModelProto:
        inp = helper.make_tensor_value_info(
            "input", TensorProto.FLOAT, [self.batch, *self.input_shape]
        )
        outp = helper.make_tensor_value_info(
            out, TensorProto.FLOAT, [self.batch, *self.shapes[out]]
        )
        graph = helper.make_graph(self.nodes, "test", [inp], [outp], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        onnx.checker.check_model(model)
        return model


def conv_model() -> onnx.ModelProto:
    """Normalization, conv+BN+relu, strided conv, max-pool, flatten, gemm."""
    g = GraphBuilder((1, 12, 12), seed=1)
    x = g.normalize("input", [0.3], [0.35])
    x = g.relu(g.batch_norm(g.conv(x, 8, bias=False)))
    x = g.relu(g.conv(x, 12, stride=2))
    x = g.max_pool(x)
    return g.build(g.gemm(g.flatten(x), 10))


def depthwise_model() -> onnx.ModelProto:
    """Depthwise-separable block with Clip (ReLU6) and average pooling."""
    g = GraphBuilder((3, 12, 12), seed=2)
    x = g.normalize("input", [0.5, 0.4, 0.3], [0.25, 0.3, 0.2])
    x = g.clip(g.conv(x, 8))
    x = g.clip(g.conv(x, 8, group=8))
    x = g.relu(g.conv(x, 16, k=1, pad=0))
    x = g.avg_pool(x)
    return g.build(g.gemm(g.reshape(x), 5, trans_b=False))


def residual_model() -> onnx.ModelProto:
    """Two residual blocks (identity and projection shortcut) and global average pooling."""
    g = GraphBuilder((3, 10, 10), seed=3)
    x = g.normalize("input", [0.49, 0.48, 0.45], [0.25, 0.24, 0.26])
    x = g.relu(g.batch_norm(g.conv(x, 8, bias=False)))
    y = g.relu(g.batch_norm(g.conv(x, 8, bias=False)))
    y = g.batch_norm(g.conv(y, 8, bias=False))
    x = g.relu(g.add(y, x))
    y = g.relu(g.batch_norm(g.conv(x, 16, stride=2, bias=False)))
    y = g.batch_norm(g.conv(y, 16, bias=False))
    shortcut = g.batch_norm(g.conv(x, 16, k=1, stride=2, pad=0, bias=False))
    x = g.relu(g.add(y, shortcut))
    x = g.global_avg_pool(x)
    return g.build(g.gemm(g.flatten(x), 10))


def mlp_model() -> onnx.ModelProto:
    """Normalization in front of a flat MLP: Mul/Sub folding into a MatMul."""
    g = GraphBuilder((1, 8, 8), seed=4)
    x = g.flatten("input")
    x = g.node("Mul", [x, g.const(np.float32(2.0))], g.shapes[x])
    x = g.node("Sub", [x, g.const(np.float32(1.0))], g.shapes[x])
    x = g.relu(g.matmul(x, 32))
    x = g.relu(g.gemm(x, 16))
    return g.build(g.gemm(x, 10))


def first_pixel_model(shape: tuple[int, ...] = (1, 4, 4)) -> onnx.ModelProto:
    """Logits (x[0], 0): class 0 wins exactly when the first pixel is >= 0 (ties go to 0)."""
    g = GraphBuilder(shape)
    x = g.flatten("input")
    weight = np.zeros((int(np.prod(shape)), 2), np.float32)
    weight[0, 0] = 1.0
    return g.build(g.node("MatMul", [x, g.const(weight, "w")], (2,)))


def ort_qdq_model(make, shape: tuple[int, ...], folder) -> onnx.ModelProto:
    """``make()`` quantized by ONNX Runtime into a QDQ model (int8, per-channel weights,
    symmetric activations), calibrated on random images; ``folder`` holds its files."""
    from pathlib import Path

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    from tvm_intsmooth.runtime import float_inputs

    class Reader(CalibrationDataReader):
        def __init__(self):
            rngs = [np.random.default_rng(i) for i in range(4)]
            batches = [r.integers(0, 256, (16, *shape), dtype=np.uint8) for r in rngs]
            self.it = iter({"input": float_inputs(b)} for b in batches)

        def get_next(self):
            return next(self.it, None)

    src, dst = Path(folder) / "float.onnx", Path(folder) / "qdq.onnx"
    onnx.save(make(), src)
    ort_quantize_static(
        str(src),
        str(dst),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        extra_options={"ActivationSymmetric": True},
    )
    return onnx.load(dst)


def signed_input_model() -> onnx.ModelProto:
    """Convolutions whose inputs can be negative (no ReLU between them), channel counts that are
    not multiples of 16, and a depthwise conv of a signed input."""
    g = GraphBuilder((3, 9, 9), seed=5)
    x = g.normalize("input", [0.5, 0.5, 0.5], [0.3, 0.3, 0.3])
    x = g.batch_norm(g.conv(x, 20, bias=False))
    x = g.conv(x, 12, stride=2)
    x = g.relu(g.conv(x, 12, group=12))
    x = g.conv(x, 7, k=1, pad=0)
    return g.build(g.gemm(g.flatten(x), 4))


def pooling_model() -> onnx.ModelProto:
    """A strided first layer on an odd size, max pools with padding, in ceil mode and on signed
    values, then global average pooling: pooling in the blocked layout."""
    g = GraphBuilder((3, 17, 17), seed=6)
    x = g.normalize("input", [0.5, 0.4, 0.3], [0.25, 0.3, 0.2])
    x = g.relu(g.conv(x, 16, stride=2))  # 17 -> 9
    x = g.max_pool(x, k=3, stride=2, pad=1)  # 9 -> 5, padded
    x = g.conv(x, 24)  # no ReLU: signed values into the next pool
    x = g.max_pool(x, k=2, stride=2, ceil_mode=1)  # 5 -> 3, the last window past the edge
    x = g.relu(g.conv(x, 16))
    x = g.global_avg_pool(x)
    return g.build(g.gemm(g.flatten(x), 10))


TEST_MODELS = {
    "conv": conv_model,
    "depthwise": depthwise_model,
    "residual": residual_model,
    "mlp": mlp_model,
}
