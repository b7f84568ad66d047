"""ONNX -> float Relax through TVM's own frontend, after a pre-scan of the ONNX graph.

``import_onnx`` checks what can go wrong with a user's model before anything is converted, and
reports it at once: a missing or corrupt file, several inputs or outputs, a dynamic or wrong-rank
input, NaN or infinite weights, and every operator or attribute the integer pipeline cannot
handle, by ONNX node name and op type with what to do (:mod:`.onnx_prescan`). ``auto_pad`` is
written as explicit pads (from ONNX shape inference) so that padding stays an attribute of the
convolution or pooling. Then ``tvm.relax.frontend.onnx.from_onnx`` converts the graph, with the
weights bound as constants and the batch axis symbolic.

The module is in the form TVM's frontend emits it; the pipeline's ``canonicalize`` phase
(:mod:`tvm_intsmooth.pipeline.phases`) brings it to the forms QuantizeToInteger rewrites. The
ONNX model is kept: the artifact ships it for the float reference (``intsmooth certify
--float``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from tvm_intsmooth.errors import IntSmoothError, UnsupportedModelError
from tvm_intsmooth.importer.imported_model import ImportedModel
from tvm_intsmooth.importer.onnx_prescan import ACTIVATION_OPS, prescan
from tvm_intsmooth.importer.relax_import import output_classes

#: ONNX operators accepted on activations (any operator is accepted on constants and shapes).
SUPPORTED_OPS = frozenset(ACTIVATION_OPS)


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
    if ttype.elem_type != onnx.TensorProto.FLOAT:
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


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Initializers and the values of Constant nodes with a tensor value."""
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for attr in node.attribute:
                if attr.name == "value" and attr.HasField("t"):
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def _check_finite(values: dict[str, np.ndarray], where: str) -> None:
    """Refuse NaN or infinite weights: they compile, and then every vote is meaningless."""
    bad = [
        f"{name!r} ({int(np.count_nonzero(~np.isfinite(value)))} of {value.size} values)"
        for name, value in values.items()
        if value.dtype.kind in "fc" and not np.all(np.isfinite(value))
    ]
    if bad:
        raise UnsupportedModelError(
            f"ONNX model {where}: initializer(s) or Constant node(s) {', '.join(bad)} hold NaN "
            "or infinite values; the model is broken (a diverged training run or a bad export). "
            "Re-export it from finite weights."
        )


def _static_shapes(proto: onnx.ModelProto) -> dict[str, list[int | None]]:
    """The static shape of each value of the graph, from ONNX shape inference."""
    try:
        inferred = onnx.shape_inference.infer_shapes(proto)
    except Exception:  # a model shape inference cannot read: convert it as it is
        inferred = proto
    shapes: dict[str, list[int | None]] = {}
    graph = inferred.graph
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        ttype = vi.type.tensor_type
        if ttype.HasField("shape"):
            dims = ttype.shape.dim
            shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    for init in graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def _explicit_pads(proto: onnx.ModelProto, shapes: dict[str, list[int | None]], where: str):
    """A copy of ``proto`` whose Conv/MaxPool/AveragePool nodes state ``pads`` instead of
    ``auto_pad`` SAME_UPPER/SAME_LOWER/VALID (computed as the ONNX operators define them)."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    for node in out.graph.node:
        if node.op_type not in ("Conv", "MaxPool", "AveragePool"):
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        auto_pad = attrs.get("auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
        if auto_pad == "NOTSET":
            continue
        shape = shapes.get(node.input[0])
        if node.op_type == "Conv":
            w_shape = shapes.get(node.input[1])
            kernel = list(attrs.get("kernel_shape", w_shape[2:] if w_shape else []))
        else:
            kernel = list(attrs.get("kernel_shape", []))
        spatial = shape[2:] if shape else None
        if not kernel or not spatial or len(spatial) != len(kernel) or None in spatial:
            raise UnsupportedModelError(
                f"ONNX model {where}: node {node.name or node.output[0]!r} ({node.op_type}) uses "
                f"auto_pad={auto_pad} on an input of unknown shape; re-export with explicit pads."
            )
        strides = list(attrs.get("strides", [1] * len(kernel)))
        dilations = list(attrs.get("dilations", [1] * len(kernel)))
        begin, end = [], []
        for size, k, s, d in zip(spatial, kernel, strides, dilations, strict=True):
            if auto_pad == "VALID":
                total = 0
            else:
                out_size = math.ceil(size / s)
                total = max((out_size - 1) * s + (k - 1) * d + 1 - size, 0)
            low = total // 2 if auto_pad != "SAME_LOWER" else total - total // 2
            begin.append(low)
            end.append(total - low)
        kept = [a for a in node.attribute if a.name not in ("auto_pad", "pads")]
        del node.attribute[:]
        node.attribute.extend(kept)
        node.attribute.append(helper.make_attribute("pads", begin + end))
    return out


def import_onnx(model: str | os.PathLike | onnx.ModelProto) -> ImportedModel:
    """Import an ONNX image classifier as a float Relax module (TVM's ``from_onnx``).

    Args:
        model: path to an ``.onnx`` file, or an ``onnx.ModelProto``.

    Returns:
        An :class:`ImportedModel`; its ``mod["main"]`` takes float32 pixels in [0, 1] of shape
        ``(batch, *input_shape)`` and returns float32 logits ``(batch, num_classes)``.

    Raises:
        IntSmoothError: missing or corrupt file.
        UnsupportedModelError: every unsupported operator and attribute (all listed, by node
            name), several inputs or outputs, a dynamic or wrong-rank input, non-finite weights.
    """
    from tvm.relax.frontend.onnx import from_onnx

    proto, where = _load(model)
    graph = proto.graph
    graph_input = _graph_input(graph, where)
    sample_shape = _input_shape(graph_input, where)
    if len(graph.output) != 1:
        raise UnsupportedModelError(
            f"ONNX model {where} has {len(graph.output)} outputs; a classifier has one (logits)."
        )
    _check_finite(_constants(graph), where)
    shapes = _static_shapes(proto)
    ranks = {name: len(shape) for name, shape in shapes.items()}
    prescan(graph, graph_input.name, ranks, where)
    out_shape = shapes.get(graph.output[0].name)
    if out_shape is not None and len(out_shape) != 2:
        raise UnsupportedModelError(
            f"ONNX model {where}: output {graph.output[0].name!r} has rank {len(out_shape)}; a "
            "classifier returns batch x classes logits. Add a Flatten before it."
        )
    converted = _explicit_pads(proto, shapes, where)
    try:
        mod = from_onnx(converted, keep_params_in_input=False)
    except Exception as err:  # the frontend's own refusal, named
        raise UnsupportedModelError(
            f"ONNX model {where}: TVM's ONNX frontend could not convert it "
            f"({type(err).__name__}: {str(err).strip().splitlines()[-1][:300]})."
        ) from None
    params = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    return ImportedModel(
        mod=mod,
        params=params,
        input_name=graph_input.name,
        input_shape=sample_shape,
        layout="NCHW" if len(sample_shape) == 3 else "NC",
        output_name=graph.output[0].name,
        num_classes=output_classes(mod, where),
        source=where,
        onnx_model=proto,
    )
