"""ONNX -> float Relax, for the operators the integer pipeline understands.

The importer maps each ONNX node to the Relax operator that computes it, in a canonical form that
the QuantizeToInteger pass reads: Conv becomes ``nn.conv2d`` (plus ``add`` of a bias), Gemm and
MatMul become ``matmul`` against a ``[K, O]`` weight, BatchNormalization after a Conv or Gemm is
folded into its weights, quantize/dequantize nodes of QDQ models stay as ``quantize`` and
``dequantize`` so their scales reach the quantizer. The batch dimension is a symbolic ``batch``
variable; every other dimension is fixed.

Everything that can go wrong with a user's model is checked up front and reported at once: a
missing or corrupt file, every unsupported operator (not only the first), several inputs, a
dynamic or wrong-rank input.

Why this importer, next to TVM's own ``tvm.relax.frontend.onnx.from_onnx`` (whose modules the
pipeline also accepts, see :mod:`.relax_import`): it reports every operator the integer pipeline
cannot handle in one message before any conversion, where a frontend converts what it knows
(including operators no integer rule exists for) and leaves the failure to the quantizer, one
operator at a time; it keeps the ONNX model, which the artifact ships for the float reference
(``intsmooth certify --float``); and it names bindings after the ONNX tensors, which makes
dumped IR and error messages point at the user's own layer names.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from tvm import ir, relax, tirx

from tvm_intsmooth.errors import IntSmoothError, UnsupportedModelError
from tvm_intsmooth.importer.onnx_ops import CONVERTERS, ConvertContext

#: Operators with a converter; anything else is reported as unsupported.
SUPPORTED_OPS = frozenset(CONVERTERS)


@dataclass
class ImportedModel:
    """A float Relax module imported from ONNX, with what the rest of the pipeline needs."""

    mod: ir.IRModule
    params: dict[str, np.ndarray]
    input_name: str
    input_shape: tuple[int, ...]  # (C, H, W) or (F,): the sample shape without the batch dim
    layout: str  # "NCHW" for images, "NC" for flat inputs
    output_name: str
    num_classes: int
    source: str = ""
    onnx_model: onnx.ModelProto | None = field(default=None, repr=False)


def _load(model: str | os.PathLike | onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    if isinstance(model, onnx.ModelProto):
        return model, "<onnx.ModelProto>"
    path = Path(model)
    if not path.is_file():
        raise IntSmoothError(f"ONNX model {path}: no such file. Check the path.")
    try:
        proto = onnx.load(str(path))
    except Exception as err:  # onnx raises DecodeError, OSError, ...
        raise IntSmoothError(
            f"ONNX model {path} could not be read ({type(err).__name__}: {err}); "
            "the file is corrupt or not an ONNX model. Re-export it."
        ) from None
    if not proto.graph.node:
        raise IntSmoothError(f"ONNX model {path} has an empty graph; it is not a classifier.")
    return proto, str(path)


def _check_ops(graph: onnx.GraphProto, where: str) -> None:
    unsupported: dict[str, list[str]] = {}
    for node in graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in SUPPORTED_OPS:
            key = (
                node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
            )
            unsupported.setdefault(key, []).append(node.name or node.output[0])
    if unsupported:
        listing = "; ".join(
            f"{op} ({len(nodes)} node{'s' * (len(nodes) > 1)}, e.g. {nodes[0]!r})"
            for op, nodes in sorted(unsupported.items())
        )
        raise UnsupportedModelError(
            f"ONNX model {where} uses {len(unsupported)} operator type(s) that the integer-only "
            f"pipeline does not support: {listing}. Supported operators are: "
            f"{', '.join(sorted(SUPPORTED_OPS))}. Re-export the model without them (for example, "
            "fold them into neighbouring layers, or replace them by supported equivalents)."
        )


def _graph_input(graph: onnx.GraphProto, where: str) -> onnx.ValueInfoProto:
    initializers = {init.name for init in graph.initializer}
    inputs = [vi for vi in graph.input if vi.name not in initializers]
    if len(inputs) != 1:
        names = ", ".join(vi.name for vi in inputs) or "none"
        raise UnsupportedModelError(
            f"ONNX model {where} has {len(inputs)} data inputs ({names}); an image classifier "
            "must have exactly one."
        )
    return inputs[0]


def _input_shape(vi: onnx.ValueInfoProto, where: str) -> tuple[int, ...]:
    ttype = vi.type.tensor_type
    if ttype.elem_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.UINT8):
        raise UnsupportedModelError(
            f"ONNX model {where}: input {vi.name!r} has element type "
            f"{onnx.TensorProto.DataType.Name(ttype.elem_type)}; expected float32 pixels in [0, 1]."
        )
    dims = list(ttype.shape.dim)
    if len(dims) not in (2, 4):
        raise UnsupportedModelError(
            f"ONNX model {where}: input {vi.name!r} has rank {len(dims)}; expected N x C x H x W "
            "(images) or N x F (flat)."
        )
    shape = []
    for axis, dim in enumerate(dims[1:], start=1):
        if not dim.HasField("dim_value") or dim.dim_value <= 0:
            raise UnsupportedModelError(
                f"ONNX model {where}: input {vi.name!r} has a dynamic dimension at axis {axis} "
                f"({dim.dim_param or '?'}); only the batch dimension may be dynamic. Re-export "
                "with a fixed image size."
            )
        shape.append(dim.dim_value)
    return tuple(shape)


def _check_finite(params: dict[str, np.ndarray], where: str) -> None:
    """Refuse NaN or infinite weights: they compile, and then every vote is meaningless."""
    bad = [
        f"{name!r} ({int(np.count_nonzero(~np.isfinite(value)))} of {value.size} values)"
        for name, value in params.items()
        if value.dtype.kind in "fc" and not np.all(np.isfinite(value))
    ]
    if bad:
        raise UnsupportedModelError(
            f"ONNX model {where}: initializer(s) {', '.join(bad)} hold NaN or infinite values; "
            "the model is broken (a diverged training run or a bad export). Re-export it from "
            "finite weights."
        )


def _var_name(name: str, used: set[str]) -> str:
    base = re.sub(r"\W", "_", name) or "t"
    if base[0].isdigit():
        base = "t_" + base
    candidate, i = base, 1
    while candidate in used:
        candidate, i = f"{base}_{i}", i + 1
    used.add(candidate)
    return candidate


def import_onnx(model: str | os.PathLike | onnx.ModelProto) -> ImportedModel:
    """Import an ONNX image classifier as a float Relax module.

    Args:
        model: path to an ``.onnx`` file, or an ``onnx.ModelProto``.

    Returns:
        An :class:`ImportedModel`; its ``mod["main"]`` takes float32 pixels in [0, 1] of shape
        ``(batch, *input_shape)`` and returns float32 logits ``(batch, num_classes)``.

    Raises:
        IntSmoothError: missing or corrupt file.
        UnsupportedModelError: unsupported operators (all listed), several inputs, a dynamic
            or wrong-rank input, or an output that is not ``batch x classes``.
    """
    proto, where = _load(model)
    graph = proto.graph
    _check_ops(graph, where)
    graph_input = _graph_input(graph, where)
    sample_shape = _input_shape(graph_input, where)
    if len(graph.output) != 1:
        raise UnsupportedModelError(
            f"ONNX model {where} has {len(graph.output)} outputs; a classifier has one (logits)."
        )

    params = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    _check_finite(params, where)
    batch = tirx.Var("batch", "int64")
    x = relax.Var("input", relax.TensorType((batch, *sample_shape), "float32"))
    bb = relax.BlockBuilder()
    ctx = ConvertContext(bb=bb, batch=batch, where=where)
    used_names: set[str] = {"input"}
    with bb.function("main", [x]):
        with bb.dataflow():
            ctx.values[graph_input.name] = x
            for name, value in params.items():
                ctx.values[name] = value
            for node in graph.node:
                converted = CONVERTERS[node.op_type](ctx, node)
                outputs = converted if isinstance(converted, tuple) else (converted,)
                for out_name, value in zip(node.output, outputs, strict=False):
                    if isinstance(value, relax.Expr) and not isinstance(value, relax.Var):
                        value = bb.emit(value, name_hint=_var_name(out_name, used_names))
                    ctx.values[out_name] = value
            out = ctx.values[graph.output[0].name]
            if isinstance(out, np.ndarray):
                raise UnsupportedModelError(
                    f"ONNX model {where}: the output does not depend on the input."
                )
            out_shape = out.ty.shape
            if len(out_shape) != 2:
                raise UnsupportedModelError(
                    f"ONNX model {where}: output {graph.output[0].name!r} has rank "
                    f"{len(out_shape)}; a classifier returns batch x classes logits. "
                    "Add a Flatten before it."
                )
            gv = bb.emit_output(out)
        bb.emit_func_output(gv)
    # BatchNorm folding re-emits its Conv; the unfolded one is dead.
    mod = relax.transform.DeadCodeElimination()(bb.get())
    return ImportedModel(
        mod=mod,
        params=params,
        input_name=graph_input.name,
        input_shape=sample_shape,
        layout="NCHW" if len(sample_shape) == 3 else "NC",
        output_name=graph.output[0].name,
        num_classes=int(out_shape[1]),
        source=where,
        onnx_model=proto,
    )
