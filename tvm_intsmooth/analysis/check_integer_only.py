"""Checker for the integer-only contract (docs/integer_only.md).

:func:`check_integer_only` walks every function of an ``IRModule`` (Relax functions before or after
legalization, the VM-lowered graph, and every TIR ``PrimFunc`` before or after the TIR pipeline)
and reports each place where a floating-point dtype or a float-only operator occurs. Integer,
unsigned, bool and opaque-handle dtypes are allowed; a pointer is allowed when what it points to
is. Operator attributes (compile-time parameters such as ``roi`` of ``resize2d``) are not
computation and are not inspected; operators that compute in float whatever their input dtype are
reported by name instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import tvm
import tvm_ffi
from tvm import relax, tirx

from tvm_intsmooth.errors import IntSmoothError

__all__ = ["Finding", "check_integer_only", "FLOAT_ONLY_OPS"]

# DLPack type codes: int, uint, opaque handle, bool. Everything else (float, bfloat, float8,
# float4, complex, custom types) is floating point or unknown, and is reported.
_INTEGER_TYPE_CODES = frozenset({0, 1, 3, 6})

# Last component of operator names (relax.nn.softmax, tirx.exp, ...) that compute in floating
# point whatever the dtype of their operands.
FLOAT_ONLY_OPS = frozenset(
    {
        "exp", "exp2", "exp10", "log", "log2", "log10", "log1p", "sqrt", "rsqrt", "sigmoid",
        "tanh", "erf", "sin", "cos", "tan", "sinh", "cosh", "asin", "acos", "atan", "atan2",
        "asinh", "acosh", "atanh", "hypot", "ldexp", "nextafter", "copysign", "fmod",
        "logaddexp", "isnan", "isinf", "isfinite", "softmax", "log_softmax", "gelu",
        "gelu_tanh", "silu", "leakyrelu", "leaky_relu", "prelu", "layer_norm", "batch_norm",
        "group_norm", "rms_norm", "instance_norm", "quantize", "dequantize", "resize2d",
        "resize3d",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Finding:
    """One floating-point occurrence in a module.

    Attributes:
        function: name of the global function (Relax function or PrimFunc) it occurs in.
        kind: what it is: ``param``, ``return``, ``var``, ``buffer``, ``allocation``,
            ``pointer``, ``constant``, ``dtype``, ``float-imm``, ``cast``, ``call``, ``expr``
            or ``op`` (a float-only operator).
        where: the variable, buffer or (shortened) expression, e.g. ``lv3`` or
            ``T.Cast("float32", A[i])``.
        dtype: the floating-point dtype found (empty for a float-only operator on integers).
        op: the operator or expression node involved (``relax.astype``, ``Cast``), or empty.
    """

    function: str
    kind: str
    where: str
    dtype: str
    op: str = ""

    def __str__(self) -> str:
        text = f"{self.function}: {self.kind} {self.where}"
        if self.dtype:
            text += f" has dtype {self.dtype}"
        if self.op:
            text += f" (op {self.op})"
        return text


def is_integer_dtype(dtype: Any) -> bool:
    """True for int, uint, bool and handle dtypes (any lane count), False for anything else."""
    try:
        code = tvm_ffi.dtype(str(dtype)).type_code
    except (TypeError, ValueError):
        return False
    return code in _INTEGER_TYPE_CODES


def _float_parts(ty: Any, path: str = "") -> list[tuple[str, str]]:
    """(dtype, path) for every floating-point dtype inside a type, e.g. tuple field ``[1]``."""
    if ty is None:
        return []
    fields = getattr(ty, "fields", None)
    if fields is not None:  # TupleType
        return [p for i, f in enumerate(fields) for p in _float_parts(f, f"{path}[{i}]")]
    element = getattr(ty, "element_type", None)
    if element is not None:  # PointerType
        return _float_parts(element, f"{path} (pointee)")
    params = getattr(ty, "params", None)
    if params is not None and hasattr(ty, "ret"):  # Relax FuncType
        found = [p for i, t in enumerate(params) for p in _float_parts(t, f"{path} param {i}")]
        return found + _float_parts(ty.ret, f"{path} return")
    dtype = getattr(ty, "dtype", None)
    if dtype is None or is_integer_dtype(dtype):
        return []
    return [(str(dtype), path)]


def _op_name(op: Any) -> str:
    for attr in ("name", "name_hint", "global_symbol"):
        name = getattr(op, attr, None)
        if isinstance(name, str):
            return name
    return type(op).__name__


def _short(node: Any, limit: int = 100) -> str:
    lines = [ln.strip() for ln in str(node).splitlines() if not ln.lstrip().startswith("#")]
    text = " ".join(ln for ln in lines if ln)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _FunctionChecker:
    """Collects findings for one global function; one pre-order structural walk of its body."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.findings: list[Finding] = []
        self.seen: set[Any] = set()  # nodes already reported or deliberately covered
        self.bound_to: dict[Any, str] = {}  # binding value -> name of the var it is bound to
        self.binding_op: dict[Any, str] = {}  # bound var -> operator computing it

    def add(self, kind: str, where: str, dtype: str, op: str = "") -> None:
        self.findings.append(Finding(self.name, kind, where, dtype, op))

    def add_type(self, kind: str, where: str, ty: Any, op: str = "") -> None:
        for dtype, path in _float_parts(ty):
            self.add(kind, where + path, dtype, op)

    def walk(self, node: Any) -> None:
        tvm_ffi.structural_walk(node, self.visit, order="pre")

    def check_params(self, params: Any) -> None:
        for param in params:
            self.seen.add(param)
            self.add_type("param", param.name, param.ty)

    def visit(self, node: Any) -> Any:
        skip = tvm_ffi.WalkResult.SKIP
        if isinstance(node, tvm.ir.Type):
            return skip
        if isinstance(node, (tvm.ir.Var, tvm.ir.GenericConst)) and node in self.seen:
            return skip
        if isinstance(node, relax.Function):
            self.check_params(node.params)
            self.add_type("return", f"of nested function {_short(node, 40)}", _return_type(node))
            return None
        if isinstance(node, (relax.VarBinding, relax.MatchCast)):
            self.bound_to[node.value] = node.var.name
            if isinstance(node.value, tvm.ir.Call):
                self.binding_op[node.var] = _op_name(node.value.op)
            return None
        if isinstance(node, tirx.AllocBuffer):
            self.report_allocation(node.buffer)
            return None
        alloc_buffers = getattr(node, "alloc_buffers", None) if _is_block(node) else None
        for buffer in alloc_buffers or ():
            self.report_allocation(buffer)
        if isinstance(node, tvm.ir.Var):
            self.seen.add(node)
            kind = _var_kind(node.ty)
            self.add_type(kind, node.name, node.ty, self.binding_op.get(node, ""))
            return skip
        if isinstance(node, tvm.ir.Call):
            self.check_call(node)
            return skip
        return self.check_other(node)

    def report_allocation(self, buffer: Any) -> None:
        if buffer not in self.seen:
            self.seen.add(buffer)
            self.add_type("allocation", buffer.name, buffer.ty)

    def check_call(self, call: Any) -> None:
        op = _op_name(call.op)
        bound = self.bound_to.get(call)
        where = f"{bound} = {op}(...)" if bound else _short(call)
        if op.rsplit(".", 1)[-1] in FLOAT_ONLY_OPS:
            self.add("op", where, ", ".join(d for d, _ in _float_parts(call.ty)), op)
        elif bound is None:
            self.add_type("call", where, call.ty, op)
        context = f" of {op}" + (f" bound to {bound}" if bound else "")
        for i, arg in enumerate(call.args):
            for j, item in _flatten_tuple(arg):
                if isinstance(item, tvm.ir.GenericConst):
                    self.check_constant(item, f"argument {i}{j}{context}")
            self.walk(arg)  # attrs are compile-time parameters: walk the operands only

    def check_constant(self, const: Any, where: str) -> None:
        self.seen.add(const)
        value = getattr(const, "value", None)
        if isinstance(value, tvm_ffi.dtype):  # R.dtype("float32"), e.g. a tensor allocation
            if not is_integer_dtype(value):
                self.add("dtype", where, str(value))
            return
        self.add_type("constant", where, const.ty)

    def check_other(self, node: Any) -> Any:
        if isinstance(node, tvm.ir.GenericConst):
            self.check_constant(node, "constant " + _short(node.ty, 60))
            return None
        if isinstance(node, tirx.FloatImm):
            self.add_type("float-imm", _short(node), node.ty)
            return None
        if isinstance(node, tirx.Cast):
            self.add_type("cast", _short(node), node.ty, "Cast")
            return None
        # A tuple's type is its fields' types, and the fields are reported themselves.
        ignored = (tvm.ir.GlobalVar, tvm.ir.Tuple, relax.SeqExpr, relax.ExternFunc, tvm.ir.Op)
        if isinstance(node, ignored) or _contains(self.bound_to, node):
            return None
        ty = getattr(node, "ty", None) if isinstance(node, tvm.ir.Expr) else None
        if ty is not None:
            self.add_type("expr", _short(node), ty, type(node).__name__)
        return None


def _contains(container: Any, node: Any) -> bool:
    try:
        return node in container
    except TypeError:  # some IR nodes (IterVar) are not hashable, and are never recorded
        return False


def _return_type(func: Any) -> Any:
    if isinstance(func, tirx.PrimFunc):
        return func.ret_type
    return func.ty.ret


def _is_block(node: Any) -> bool:
    return type(node).__name__ == "SBlock"


def _var_kind(ty: Any) -> str:
    name = type(ty).__name__
    if name == "BufferType":
        return "buffer"
    if name == "PointerType":
        return "pointer"
    return "var"


def _flatten_tuple(expr: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(expr, relax.Tuple):
        return [p for i, f in enumerate(expr.fields) for p in _flatten_tuple(f, f"{path}[{i}]")]
    return [(path, expr)]


def _check_function(name: str, func: Any) -> list[Finding]:
    checker = _FunctionChecker(name)
    checker.check_params(func.params)
    checker.add_type("return", "value", _return_type(func))
    checker.walk(func.body)
    unique: dict[Finding, None] = dict.fromkeys(checker.findings)
    return list(unique)


def check_integer_only(mod: tvm.IRModule, raise_on_error: bool = False) -> list[Finding]:
    """Find every floating-point dtype or float-only operator in a module.

    Walks every Relax function (parameter, return, variable and constant types including tuple
    fields, the output type of every call, ``R.dtype`` arguments such as tensor allocations, and
    operators that only exist in float) and every TIR PrimFunc (parameters, buffers and
    allocations, pointer element types, and every expression including casts and float
    immediates). Works before and after ``relax.transform.LegalizeOps`` and on lowered modules.

    Args:
        mod: the module to check.
        raise_on_error: raise instead of returning when anything is found.

    Returns:
        The findings, in function-name order; an empty list means the module is integer-only.

    Raises:
        IntSmoothError: ``mod`` is not an IRModule, or ``raise_on_error`` is set and there are
            findings (the message lists all of them).
    """
    if not isinstance(mod, tvm.IRModule):
        raise IntSmoothError(
            f"check_integer_only expects a tvm.IRModule, got {type(mod).__name__}; wrap a "
            "single function with tvm.IRModule({'main': func})."
        )
    findings: list[Finding] = []
    for gvar, func in sorted(mod.functions.items(), key=lambda item: _op_name(item[0])):
        if isinstance(func, (tirx.PrimFunc, relax.Function)):
            findings.extend(_check_function(_op_name(gvar), func))
    if raise_on_error and findings:
        listing = "\n".join(f"  {f}" for f in findings)
        raise IntSmoothError(
            f"the module is not integer-only: {len(findings)} floating-point occurrence(s):\n"
            f"{listing}\nQuantize the model (all weights, activations and requantization in "
            "integers) before building it for integer-only deployment."
        )
    return findings
