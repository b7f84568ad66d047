"""Reading the single dataflow block of an imported (or quantized) Relax function."""

from __future__ import annotations

from collections.abc import Iterator

from tvm import relax

from tvm_intsmooth.errors import UnsupportedModelError


def dataflow_bindings(func: relax.Function) -> Iterator[tuple[relax.Var, relax.Expr]]:
    """Yield (var, value) for every binding of a function made of one dataflow block."""
    body = func.body
    if not isinstance(body, relax.SeqExpr) or len(body.blocks) != 1:
        raise UnsupportedModelError(
            "expected a function with exactly one dataflow block, as import_onnx produces; "
            "run relax.transform.ConvertToDataflow first"
        )
    for binding in body.blocks[0].bindings:
        if not isinstance(binding, relax.VarBinding):
            raise UnsupportedModelError(f"unsupported binding {type(binding).__name__}")
        yield binding.var, binding.value


def replace_function(mod, name: str, func: relax.Function):
    """A copy of ``mod`` with function ``name`` replaced."""
    import tvm

    out = tvm.IRModule({gv: f for gv, f in mod.functions_items()}, attrs=mod.attrs)
    out[name] = func
    return out
