"""Float Relax modules made by TVM's own frontends (or by hand), and PyTorch programs.

``tvm.relax.frontend.onnx.from_onnx(model, keep_params_in_input=False)`` and
``tvm.relax.frontend.torch.from_exported_program(torch.export.export(...))`` both give a module
whose ``main`` takes float pixels and returns logits, with the weights bound as constants.
:func:`import_relax` checks what can be checked before canonicalization (one float input of rank
2 or 4 with static sample dimensions, weights bound); :func:`check_canonical` checks the result
of the pipeline's ``canonicalize`` phase (a symbolic batch, ``batch x classes`` logits), so that
a module the quantizer cannot read fails with the reason, not deep inside a pass.
"""

from __future__ import annotations

import tvm
from tvm import relax, tirx

from tvm_intsmooth.errors import UnsupportedModelError
from tvm_intsmooth.importer.imported_model import ImportedModel


def main_function(mod: tvm.IRModule, source: str = "<relax.IRModule>") -> relax.Function:
    names = [gv.name_hint for gv in mod.get_global_vars()]
    if "main" not in names or not isinstance(mod["main"], relax.Function):
        raise UnsupportedModelError(
            f"{source}: the Relax module has no Relax function 'main' (functions: "
            f"{', '.join(names)}); import the classifier with tvm.relax.frontend.onnx.from_onnx "
            "or tvm.relax.frontend.torch.from_exported_program."
        )
    return mod["main"]


def _logits_type(mod: tvm.IRModule, source: str):
    out = main_function(mod, source).ret_ty
    if isinstance(out, relax.TupleType) and len(out.fields) == 1:  # the PyTorch frontend's tuple
        out = out.fields[0]
    return out


def output_classes(mod: tvm.IRModule, source: str) -> int:
    """The number of classes of ``main``'s ``batch x classes`` logits."""
    out = _logits_type(mod, source)
    if not isinstance(out, relax.TensorType) or out.ndim != 2:
        raise UnsupportedModelError(
            f"{source}: main returns {out}; a classifier returns batch x classes logits."
        )
    classes = out.shape[1]
    if not isinstance(classes, tirx.IntImm):
        raise UnsupportedModelError(f"{source}: the number of classes ({classes}) is not fixed.")
    return int(classes)


def import_relax(mod: tvm.IRModule, source: str = "<relax.IRModule>") -> ImportedModel:
    """A float Relax classifier from TVM's frontends, checked for the integer passes.

    ``mod["main"]`` must take one float32 tensor of pixels in [0, 1], ``batch x C x H x W`` (or
    ``batch x F``), and return ``batch x classes`` logits (or a 1-tuple of them); its parameters
    must be bound as constants (``keep_params_in_input=False`` for from_onnx, the default of
    from_exported_program). A fixed batch of 1 is made symbolic by canonicalization.

    Raises:
        UnsupportedModelError: several inputs, parameters left as inputs, a non-float input,
            dynamic sample dimensions, or logits of another rank.
    """
    main = main_function(mod, source)
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
    dims = list(ty.shape)[1:]
    if not all(isinstance(d, tirx.IntImm) for d in dims):
        raise UnsupportedModelError(
            f"{source}: main's input {param.name!r} has shape {list(ty.shape)}; only the batch "
            "dimension may be symbolic. Export with a fixed image size."
        )
    sample_shape = tuple(int(d) for d in dims)
    return ImportedModel(
        mod=mod,
        params={},
        input_name=param.name,
        input_shape=sample_shape,
        layout="NCHW" if len(sample_shape) == 3 else "NC",
        output_name="logits",
        num_classes=output_classes(mod, source),
        source=source,
    )


def check_canonical(mod: tvm.IRModule, source: str) -> None:
    """Refuse a canonicalized module whose batch is still fixed or whose output is not
    ``batch x classes`` logits."""
    main = main_function(mod, source)
    (param,) = main.params
    batch = param.ty.shape[0]
    if not isinstance(batch, tirx.Var):
        raise UnsupportedModelError(
            f"{source}: main's input {param.name!r} has a fixed batch dimension ({batch}) that "
            "could not be made symbolic (a constant shape in the graph depends on it); "
            "the smoothed classifier chooses its own batch. Import with a symbolic batch: "
            "from_onnx without a shape_dict entry for the batch axis, or torch.export with "
            'dynamic_shapes={"x": {0: torch.export.Dim("batch")}}.'
        )
    out = main.ret_ty
    if not isinstance(out, relax.TensorType) or out.ndim != 2:
        raise UnsupportedModelError(
            f"{source}: main returns {out}; a classifier returns batch x classes logits."
        )


def import_exported_program(
    program, source: str = "<torch.export.ExportedProgram>"
) -> ImportedModel:
    """A ``torch.export.ExportedProgram`` through TVM's PyTorch frontend
    (``from_exported_program(..., keep_params_as_input=False)``)."""
    from tvm.relax.frontend.torch import from_exported_program

    try:
        mod = from_exported_program(program, keep_params_as_input=False)
    except Exception as err:  # the frontend's own refusal, named
        raise UnsupportedModelError(
            f"{source}: TVM's PyTorch frontend could not convert it ({type(err).__name__}: "
            f"{str(err).strip().splitlines()[-1][:300] if str(err).strip() else ''})."
        ) from None
    return import_relax(mod, source)
