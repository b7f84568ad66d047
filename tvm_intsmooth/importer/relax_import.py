"""Float Relax modules made by TVM's own frontends, in the form the integer passes read.

``tvm.relax.frontend.onnx.from_onnx(model, keep_params_in_input=False)`` and
``tvm.relax.frontend.torch.from_exported_program(torch.export.export(...))`` both give a module
whose ``main`` takes float pixels and returns logits, with the weights bound as constants. The
usual folding passes bring them to the form of :func:`tvm_intsmooth.import_onnx`'s modules:
constants folded (bias reshapes, shape arithmetic), batch normalization folded into the
convolution before it (or decomposed into a per-channel affine when nothing precedes it), and
bindings canonicalized. What remains is checked here, so that a module the quantizer cannot read
fails with the reason, not deep inside a pass.
"""

from __future__ import annotations

import tvm
from tvm import relax, tirx

from tvm_intsmooth.errors import UnsupportedModelError
from tvm_intsmooth.importer.onnx_import import ImportedModel

#: The passes applied to a frontend's module before quantization.
FOLDING_PASSES = (
    "FoldConstant",
    "FoldBatchnormToConv2D",
    "DecomposeOpsForInference",
    "FoldConstant",
    "CanonicalizeBindings",
    "DeadCodeElimination",
)


def _fold(mod: tvm.IRModule) -> tvm.IRModule:
    passes = [getattr(relax.transform, name)() for name in FOLDING_PASSES]
    return tvm.transform.Sequential(passes)(mod)


def _main(mod: tvm.IRModule) -> relax.Function:
    names = [gv.name_hint for gv in mod.get_global_vars()]
    if "main" not in names or not isinstance(mod["main"], relax.Function):
        raise UnsupportedModelError(
            f"the Relax module has no Relax function 'main' (functions: {', '.join(names)}); "
            "import the classifier with tvm.relax.frontend.onnx.from_onnx or "
            "tvm.relax.frontend.torch.from_exported_program."
        )
    return mod["main"]


def import_relax(mod: tvm.IRModule, source: str = "<relax.IRModule>") -> ImportedModel:
    """A float Relax classifier from TVM's frontends, folded and checked for the integer passes.

    ``mod["main"]`` must take one float32 tensor of pixels in [0, 1], ``batch x C x H x W`` (or
    ``batch x F``) with a symbolic batch dimension, and return ``batch x classes`` logits; its
    parameters must be bound as constants (``keep_params_in_input=False`` for from_onnx, the
    default of from_exported_program).

    Raises:
        UnsupportedModelError: several inputs or outputs, parameters left as inputs, a fixed
            batch dimension, a non-float input, or logits of another rank.
    """
    main = _main(mod)
    if len(main.params) != 1:
        names = ", ".join(p.name for p in main.params)
        raise UnsupportedModelError(
            f"{source}: main takes {len(main.params)} inputs ({names}); a classifier takes one "
            "(the pixels). Bind the weights as constants: from_onnx(..., keep_params_in_input="
            "False), or from_exported_program(..., keep_params_as_input=False)."
        )
    (param,) = main.params
    ty = param.ty
    if not isinstance(ty, relax.TensorType) or ty.dtype != "float32" or ty.ndim not in (2, 4):
        raise UnsupportedModelError(
            f"{source}: main's input {param.name!r} is {ty}; expected float32 pixels in "
            "[0, 1], batch x C x H x W (images) or batch x F."
        )
    batch = ty.shape[0]
    if not isinstance(batch, tirx.Var):
        raise UnsupportedModelError(
            f"{source}: main's input {param.name!r} has a fixed batch dimension ({batch}); "
            "the smoothed classifier chooses its own batch. Import with a symbolic batch: "
            "from_onnx without a shape_dict entry for the batch axis, or torch.export with "
            'dynamic_shapes={"x": {0: torch.export.Dim("batch")}}.'
        )
    sample_shape = tuple(int(d) for d in list(ty.shape)[1:])
    folded = _fold(mod)
    out = _main(folded).ret_ty
    if isinstance(out, relax.TupleType) and len(out.fields) == 1:  # the PyTorch frontend's tuple
        folded = _unwrap_tuple_output(folded)
        out = folded["main"].ret_ty
    if not isinstance(out, relax.TensorType) or out.ndim != 2:
        raise UnsupportedModelError(
            f"{source}: main returns {out}; a classifier returns batch x classes logits."
        )
    folded = tvm.IRModule({gv: f for gv, f in folded.functions_items()}, attrs=folded.attrs)
    folded["main"] = folded["main"].without_attr("num_input")
    return ImportedModel(
        mod=folded,
        params={},
        input_name=param.name,
        input_shape=sample_shape,
        layout="NCHW" if len(sample_shape) == 3 else "NC",
        output_name="logits",
        num_classes=int(out.shape[1]),
        source=source,
    )


def _unwrap_tuple_output(mod: tvm.IRModule) -> tvm.IRModule:
    """``main`` returning ``(logits,)`` (the PyTorch frontend's habit) made to return ``logits``."""
    main = mod["main"]
    body = relax.SeqExpr(main.body.blocks, relax.TupleGetItem(main.body.body, 0))
    func = relax.Function(main.params, body, main.ret_ty.fields[0], attrs=main.attrs)
    out = tvm.IRModule({gv: f for gv, f in mod.functions_items() if gv.name_hint != "main"})
    out["main"] = func
    seq = [relax.transform.Normalize(), relax.transform.CanonicalizeBindings()]
    return tvm.transform.Sequential([*seq, relax.transform.DeadCodeElimination()])(out)
