"""Before anything converts an ONNX graph: every operator and attribute the integer pipeline
cannot handle, listed at once, by node name and op type, with what to do about each.

TVM's ONNX frontend converts whatever it knows (including operators no integer rule exists for)
and leaves the failure to a later pass, one operator at a time and named after a Relax binding.
This scan reads the ONNX graph itself, so a user learns every problem of the model from one
message, in the model's own names.

Each value of the graph is classified as an *activation* (it depends on the input pixels),
*shape* arithmetic (it depends on the input only through ``Shape``: a batch size that TVM's
frontend folds) or a *constant* (initializers and what is computed from them alone). Constant
and shape nodes are computed at import time, whatever their operator; activation nodes must be
in :data:`ACTIVATION_OPS` and pass their operator's checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import onnx
from onnx import helper

from tvm_intsmooth.errors import UnsupportedModelError

#: ONNX operators accepted on activations: op type -> how it becomes integer (docs/operators.md).
ACTIVATION_OPS: dict[str, str] = {
    "Conv": "2-D, constant weights (int8 per output channel), any pads/auto_pad/strides/"
    "dilations/groups; int32 accumulator",
    "Gemm": "transA=0, constant B: int8 matmul, int32 accumulator",
    "MatMul": "constant 2-D right operand: int8 matmul",
    "BatchNormalization": "inference mode: folded into the Conv/Gemm before it, else a "
    "per-channel scale and bias",
    "Relu": "folded into the requantization clamp",
    "Clip": "constant bounds: folded into the requantization clamp",
    "LeakyRelu": "exact int32 select with a fixed-point multiply of the negative side",
    "PRelu": "constant slope: per-channel fixed-point multiply of the negative side",
    "HardSigmoid": "affine + clamp in int32 (exact piecewise-linear)",
    "HardSwish": "x times its HardSigmoid: int8 x int8 product",
    "Sigmoid": "256-entry int8 lookup table on the int8 input",
    "Tanh": "256-entry int8 lookup table on the int8 input",
    "Add": "two activations: both rescaled to one int32 scale; a constant: an int32 bias",
    "Sub": "as Add",
    "Mul": "two activations: int8 x int8 -> int32 product (squeeze-excitation, SiLU); a "
    "constant: folded into the scale",
    "Div": "by a constant: folded into the scale",
    "Concat": "inputs requantized to one int8 scale by integer multipliers",
    "MaxPool": "2-D, any pads/auto_pad/ceil_mode/dilations, no indices output: int8 max",
    "AveragePool": "2-D, any pads/auto_pad/ceil_mode/count_include_pad: int32 window sum, "
    "divisor in the scale (per position where it varies)",
    "GlobalAveragePool": "int32 sum, 1/count in the scale",
    "GlobalMaxPool": "int8 max",
    "ReduceMean": "constant axes (any spelling): int32 sum, 1/count in the scale",
    "ReduceMax": "constant axes: int8 max",
    "Flatten": "axis=1: a reshape of int8 values",
    "Reshape": "constant or shape-arithmetic target keeping the batch axis",
    "Squeeze": "a reshape of int8 values",
    "Unsqueeze": "a reshape of int8 values",
    "Identity": "removed",
    "Dropout": "removed (inference)",
    "Softmax": "only as the final head (over the class axis): dropped, the argmax is unchanged",
    "LogSoftmax": "only as the final head: dropped, the argmax is unchanged",
    "Exp": "only in the final head: dropped (strictly increasing)",
    "QuantizeLinear": "constant scale and zero point: the model's own int8 scale",
    "DequantizeLinear": "constant scale and zero point",
}

#: Operators of a final head that preserve the order of the classes (dropped on import).
HEAD_OPS = {"Softmax", "LogSoftmax", "Sigmoid", "Tanh", "Exp", "Identity"}

#: What to do about operators that have no integer form, by op type.
ADVICE: dict[str, str] = {
    "Softmax": "a softmax inside the network needs exponentials of run-time values and a "
    "division by their sum; only a final softmax (dropped, the argmax is unchanged) is "
    "supported. Remove it, or move it to the end",
    "LogSoftmax": "only a final LogSoftmax (dropped, the argmax is unchanged) is supported",
    "Exp": "only in a final head (dropped); inside the network it has no integer form",
    "LayerNormalization": "normalizes by a mean and variance computed at run time, which has "
    "no fixed-point form; use BatchNorm (folded into the layer before it)",
    "InstanceNormalization": "normalizes by run-time statistics; use BatchNorm",
    "GroupNormalization": "normalizes by run-time statistics; use BatchNorm",
    "LRN": "normalizes by run-time statistics; remove it or use BatchNorm",
    "Gelu": "replace GELU by ReLU, HardSwish or SiLU (x * sigmoid(x), a lookup table)",
    "Erf": "GELU exported as Erf: replace GELU by ReLU, HardSwish or SiLU",
    "Attention": "attention multiplies and normalizes run-time values (softmax); not supported",
    "MultiHeadAttention": "attention is not supported",
    "Einsum": "not supported on activations; use Conv or Gemm with constant weights",
    "ConvTranspose": "transposed convolutions are not supported; upsample with Resize-free "
    "architectures or a strided Conv",
    "Transpose": "transposes activations (only constant weights may be transposed)",
    "Gather": "indexes activations at run time; only shape arithmetic may use Gather",
    "Slice": "slices activations; only shape arithmetic may use Slice",
    "Split": "splits activations; export the branches as separate layers",
    "Resize": "resizing is not supported; use strided convolutions or pooling",
    "Upsample": "upsampling is not supported",
    "Pow": "raises activations to a power; not supported",
    "Sqrt": "has no integer form on activations",
    "Reciprocal": "has no integer form on activations",
    "Log": "has no integer form on activations",
    "Elu": "replace by LeakyRelu or ReLU",
    "Selu": "replace by LeakyRelu or ReLU",
    "Softplus": "replace by ReLU",
    "Softsign": "replace by Tanh or HardSigmoid",
    "ReduceSum": "replace by ReduceMean or GlobalAveragePool",
    "ArgMax": "the smoothed classifier takes the argmax itself; export the logits",
}


@dataclass(frozen=True)
class Problem:
    """One thing about one node that the pipeline cannot handle."""

    node: str
    op_type: str
    what: str  # the kind of problem (nodes with the same kind are listed together)
    advice: str


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _node_name(node: onnx.NodeProto) -> str:
    return node.name or (node.output[0] if node.output else node.op_type)


class _Graph:
    """Kinds (constant / shape / activation) and static ranks of an ONNX graph's values."""

    def __init__(self, graph: onnx.GraphProto, input_name: str, ranks: dict[str, int]):
        self.graph = graph
        self.ranks = ranks
        self.const: set[str] = {i.name for i in graph.initializer}
        self.shape: set[str] = set()
        self.activation: set[str] = {input_name}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
            inputs = [i for i in node.input if i]
            if node.op_type == "Shape":
                kind = self.shape if any(i in self.activation for i in inputs) else self.const
            elif any(i in self.activation for i in inputs):
                kind = self.activation
            elif any(i in self.shape for i in inputs):
                kind = self.shape
            else:
                kind = self.const
            kind.update(o for o in node.output if o)

    def is_const(self, name: str) -> bool:
        return name == "" or name in self.const

    def is_computed(self, name: str) -> bool:
        """Known at import time (a constant or shape arithmetic)."""
        return self.is_const(name) or name in self.shape

    def head_nodes(self) -> set[int]:
        """The final nodes that keep the classes' order, walking back from the output."""
        producers = {o: node for node in self.graph.node for o in node.output}
        out: set[int] = set()
        name = self.graph.output[0].name if self.graph.output else ""
        while name in producers:
            node = producers[name]
            if node.op_type not in HEAD_OPS or len(self.consumers.get(node.input[0], [])) != 1:
                break
            out.add(id(node))
            name = node.input[0]
        return out


Check = Callable[[onnx.NodeProto, dict, _Graph], list[tuple[str, str]]]
CHECKS: dict[str, Check] = {}


def _check(*op_types: str):
    def register(fn: Check) -> Check:
        for op in op_types:
            CHECKS[op] = fn
        return fn

    return register


def _const_input(node, graph: _Graph, i: int, what: str, advice: str):
    if i < len(node.input) and node.input[i] and not graph.is_const(node.input[i]):
        return [(what, advice)]
    return []


@_check("Conv")
def _conv(node, attrs, graph):
    problems = _const_input(
        node, graph, 1, "has weights computed at run time", "export the weights as initializers"
    )
    rank = len(attrs.get("kernel_shape", [])) or graph.ranks.get(node.input[1], 4) - 2
    if rank != 2:
        problems.append((f"is a {rank}-D convolution", "only 2-D (NCHW) convolutions"))
    return problems


@_check("Gemm")
def _gemm(node, attrs, graph):
    problems = []
    if attrs.get("transA", 0):
        problems.append(("has transA=1", "export x @ W with the activations first"))
    return problems + _const_input(
        node, graph, 1, "multiplies by weights computed at run time", "use constant weights"
    )


@_check("MatMul")
def _matmul(node, attrs, graph):
    if not graph.is_const(node.input[1]) or graph.ranks.get(node.input[1], 2) != 2:
        return [
            (
                "is not activations @ a constant 2-D matrix",
                "use constant 2-D weights (Linear/Gemm); attention-style products of two "
                "activations are not supported",
            )
        ]
    return []


@_check("BatchNormalization")
def _batch_norm(node, attrs, graph):
    problems = []
    if attrs.get("training_mode", 0):
        problems.append(("is in training mode", "export the model in eval mode (model.eval())"))
    if not all(graph.is_const(i) for i in node.input[1:5]):
        problems.append(("has statistics computed at run time", "use trained constants"))
    return problems


@_check("Clip")
def _clip(node, attrs, graph):
    if not all(graph.is_const(i) for i in node.input[1:3]):
        return [("clips to bounds computed at run time", "use constant min/max")]
    return []


@_check("PRelu")
def _prelu(node, attrs, graph):
    return _const_input(node, graph, 1, "has a slope computed at run time", "use a constant")


@_check("Div")
def _div(node, attrs, graph):
    return _const_input(
        node, graph, 1, "divides by an activation", "only division by a constant is supported"
    )


@_check("MaxPool", "AveragePool")
def _pool(node, attrs, graph):
    problems = []
    if len(attrs.get("kernel_shape", [0, 0])) != 2:
        problems.append(("pools over other than 2 spatial axes", "only 2-D pooling"))
    if node.op_type == "MaxPool" and len(node.output) > 1 and node.output[1]:
        problems.append(("returns indices", "use only the pooled values"))
    return problems


@_check("Flatten")
def _flatten(node, attrs, graph):
    if int(attrs.get("axis", 1)) != 1:
        return [("flattens from an axis other than 1", "flatten to batch x features (axis=1)")]
    return []


@_check("Reshape")
def _reshape(node, attrs, graph):
    if not graph.is_computed(node.input[1]):
        return [("reshapes to a shape computed from activations", "use a constant shape")]
    return []


@_check("ReduceMean", "ReduceMax")
def _reduce(node, attrs, graph):
    if len(node.input) > 1 and not graph.is_computed(node.input[1]):
        return [("reduces over axes computed at run time", "use constant axes")]
    return []


@_check("QuantizeLinear", "DequantizeLinear")
def _qdq(node, attrs, graph):
    if not all(graph.is_const(i) for i in node.input[1:3]):
        return [("has a scale or zero point computed at run time", "use constants")]
    return []


def scan_nodes(graph: onnx.GraphProto, input_name: str, ranks: dict[str, int]) -> list[Problem]:
    """Every problem of every activation node of ``graph``."""
    info = _Graph(graph, input_name, ranks)
    head = info.head_nodes()
    problems: list[Problem] = []
    for node in graph.node:
        name, op = _node_name(node), node.op_type
        if node.domain not in ("", "ai.onnx"):
            what = f"is a custom operator of domain {node.domain!r}"
            problems.append(Problem(name, f"{node.domain}.{op}", what, "use standard ONNX ops"))
            continue
        if not any(o in info.activation for o in node.output):
            continue  # computed at import time
        if op in ("Softmax", "LogSoftmax", "Exp") and id(node) not in head:
            problems.append(Problem(name, op, "is inside the network", ADVICE[op]))
            continue
        if op not in ACTIVATION_OPS:
            advice = ADVICE.get(op, "it has no integer rewrite; replace it by supported layers")
            problems.append(Problem(name, op, "is not supported on activations", advice))
            continue
        check = CHECKS.get(op)
        for what, advice in check(node, _attrs(node), info) if check else []:
            problems.append(Problem(name, op, what, advice))
    return problems


def format_problems(problems: list[Problem], where: str) -> str:
    """One paragraph: each kind of problem with every node that has it, and what to do."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for p in problems:
        groups.setdefault((p.op_type, p.what, p.advice), []).append(p.node)
    parts = []
    for (op, what, advice), nodes in groups.items():
        shown = ", ".join(repr(n) for n in nodes[:8])
        more = f" and {len(nodes) - 8} more" if len(nodes) > 8 else ""
        label = "node" if len(nodes) == 1 else f"{len(nodes)} nodes"
        parts.append(f"{op} {what} ({label}: {shown}{more}): {advice}")
    return (
        f"ONNX model {where} cannot be made integer-only; {len(groups)} problem(s), all listed: "
        + "; ".join(f"[{i}] {part}" for i, part in enumerate(parts, 1))
        + ". The supported operators and their limits are in docs/operators.md."
    )


def prescan(graph: onnx.GraphProto, input_name: str, ranks: dict[str, int], where: str) -> None:
    """Raise one UnsupportedModelError listing every problem of ``graph``, if it has any."""
    problems = scan_nodes(graph, input_name, ranks)
    if problems:
        raise UnsupportedModelError(format_problems(problems, where))
