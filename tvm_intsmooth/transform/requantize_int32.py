"""RequantizeInt32: the fixed-point requantizations of the graph in int32, to the bit.

The quantized graph requantizes with an int64 chain (``quantize/fixed_point.py``)::

    t = astype(x, "int64"); t = t * M; t = t + 2^(S-1); t = t >> S; [t = clip(t, lo, hi)]
    y = astype(t, out)                        # x: int8..int32, out: int8, uint8 or int32

This pass replaces every such chain whose constants allow it by one elementwise kernel in int32
arithmetic (:func:`tvm_intsmooth.schedule.requantize.requantize_int32`: a 32 x 32 -> 64 bit
high product, an add and a shift), which gives the same ``y`` for every input the chain's input
dtype can hold (the proof is in that module; :func:`int32_constants` checks its conditions
element by element). 8- and 16-bit inputs take a cheaper form where it is exact: two 32-bit
multiplies (the split form), or in a residual sum a left shift (the coarser operand's multiplier
is a power of two). A chain that does not qualify (a multiplier of 1/4 or more on an
int32 accumulator, say) is left in int64. After FuseOps the kernel is the convolutions'
epilogue: half the vector width of int64, and no 64-bit multiplies.

A residual sum, ``add(chain_a, chain_b)`` (or ``subtract``) of two split-form chains to int32 that
nothing else uses, one of them a shift (the quantizer forms the sum 2^16 times finer than its
coarser operand), becomes one kernel
(:func:`~tvm_intsmooth.schedule.requantize.requantized_sum`), the same int32 values: FuseOps then
cannot fuse an operand's rescaling into the convolution that produced the operand, so that
convolution writes the 8-bit operand and the consumer rescales it (a projection shortcut's
output otherwise goes through memory as int32, four times the bytes).

The multipliers and shifts stay tensors (per channel, or one element), never immediates, so a
model calibrated on other data has the same PrimFuncs; so does which operand of a residual sum
is the coarser (a flag tensor the kernel selects by).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax

from tvm_intsmooth.schedule.requantize import (
    int32_constants,
    requantize_int32,
    requantize_int32_split,
    requantized_sum,
    shift_constants,
    split_constants,
)

_CHAIN = ("relax.multiply", "relax.add", "relax.right_shift")
_SUMS = {"relax.add": False, "relax.subtract": True}  # op -> subtract
_OUT_DTYPES = ("int8", "uint8", "int32")


def _const(expr) -> np.ndarray | None:
    if isinstance(expr, tvm.ir.GenericConst):
        value = expr.value.numpy()
        return value if value.dtype.kind in "iu" else None
    return None


def _prim_int(expr) -> int | None:
    """An integer clip bound (an IntImm), or None."""
    return int(expr.value) if isinstance(expr, tvm.tirx.IntImm) else None


SMALL_INPUT = 2**15  # inputs of at most 16 bits try the split form first


@dataclass(frozen=True)
class _Chain:
    x: relax.Expr
    form: str  # "split" (small inputs) or "high" (the high product)
    constants: dict[str, np.ndarray]
    clip: tuple[int, int] | None
    out_dtype: str
    shift: dict[str, np.ndarray] | None = None  # its shift form, where it has one


@dataclass(frozen=True)
class _Sum:
    """A residual sum of two split-form chains: the coarser operand (``coarse_is_b``) shifts."""

    a: _Chain
    b: _Chain
    subtract: bool
    coarse_is_b: bool
    shift_left: np.ndarray
    split: dict[str, np.ndarray]

    @classmethod
    def of(cls, a: _Chain, b: _Chain, subtract: bool) -> _Sum | None:
        """The sum, where one operand has a shift form (``b`` where both do)."""
        coarse_is_b = b.shift is not None
        coarse, fine = (b, a) if coarse_is_b else (a, b)
        if coarse.shift is None:
            return None
        return cls(a, b, subtract, coarse_is_b, coarse.shift["shift_left"], fine.constants)


def _dtype_max_abs(dtype: str) -> int | None:
    if dtype not in ("int8", "uint8", "int16", "uint16", "int32"):
        return None
    info = np.iinfo(dtype)
    return max(-int(info.min), int(info.max))


class _Finder:
    """Finds the requantization chains of one dataflow block: final var -> chain."""

    def __init__(self, block: relax.DataflowBlock):
        self.values = {b.var: b.value for b in block.bindings if isinstance(b, relax.VarBinding)}
        self.uses: dict[relax.Var, int] = {}
        for value in self.values.values():
            for var in relax.analysis.free_vars(value):
                self.uses[var] = self.uses.get(var, 0) + 1
        self.users: dict[relax.Var, relax.Var] = {}
        for var, value in self.values.items():
            for free in relax.analysis.free_vars(value):
                self.users[free] = var

    def _call(self, var, name: str) -> relax.Call | None:
        value = self.values.get(var)
        if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op):
            return value if value.op.name == name else None
        return None

    def _next(self, var) -> relax.Var | None:
        """The one binding that uses ``var`` (None if there are several, or it is an output)."""
        if self.uses.get(var) != 1 or not isinstance(var, relax.DataflowVar):
            return None
        return self.users.get(var)

    def chains(self) -> dict[relax.Var, _Chain]:
        out = {}
        for var, value in self.values.items():
            chain = self._chain_from(var, value)
            if chain is not None:
                out[chain[0]] = chain[1]
        return out

    def _chain_from(self, var, value) -> tuple[relax.Var, _Chain] | None:
        """The chain that starts at ``var = astype(x, "int64")``: (its final var, the chain)."""
        if not (isinstance(value, relax.Call) and getattr(value.op, "name", "") == "relax.astype"):
            return None
        x = value.args[0]
        x_max = _dtype_max_abs(str(x.ty.dtype)) if isinstance(x.ty, relax.TensorType) else None
        if str(value.attrs.dtype) != "int64" or x_max is None:
            return None
        consts, var = self._int64_steps(var)
        if var is None:
            return None
        clip, var = self._clip(var)
        final = self._next(var) if var is not None else None
        call = self._call(final, "relax.astype") if final is not None else None
        if call is None or str(call.attrs.dtype) not in _OUT_DTYPES:
            return None
        if clip is None and str(call.attrs.dtype) != "int32":
            return None  # a narrowing cast without a clamp wraps: keep the int64 form
        form, constants = _form(consts, x_max)
        if constants is None:
            return None
        shift = shift_constants(*consts, x_max) if form == "split" else None
        return final, _Chain(x, form, constants, clip, str(call.attrs.dtype), shift)

    def sums(self, chains: dict[relax.Var, _Chain]) -> dict[relax.Var, _Sum]:
        """The adds and subtracts of two split-form int32 chains that nothing else uses, one of
        them a shift (a residual sum): add var -> the sum."""
        out = {}
        for var, value in self.values.items():
            op = getattr(value, "op", None) if isinstance(value, relax.Call) else None
            if not isinstance(op, tvm.ir.Op) or op.name not in _SUMS:
                continue
            pair = [chains.get(arg) for arg in value.args]
            if (
                all(_summable(c) for c in pair)
                and all(self.uses.get(a) == 1 for a in value.args)
                and _static_shape(pair[0].x) == _static_shape(pair[1].x) is not None
            ):
                total = _Sum.of(pair[0], pair[1], _SUMS[op.name])
                if total is not None:
                    out[var] = total
        return out

    def _int64_steps(self, var) -> tuple[list[np.ndarray], relax.Var | None]:
        """The constants of ``* M``, ``+ R``, ``>> S`` after ``var``, and the shift's var."""
        consts = []
        for name in _CHAIN:
            var = self._next(var)
            call = self._call(var, name) if var is not None else None
            const = _const(call.args[1]) if call is not None else None
            if const is None or str(call.args[1].ty.dtype) != "int64":
                return consts, None
            consts.append(const)
        return consts, var

    def _clip(self, var) -> tuple[tuple[int, int] | None, relax.Var | None]:
        """The clamp after ``var`` if there is one (its bounds, its var), else (None, var); a
        clamp beyond int32: (None, None)."""
        following = self._next(var)
        call = self._call(following, "relax.clip") if following is not None else None
        if call is None:
            return None, var
        lo, hi = _prim_int(call.args[1]), _prim_int(call.args[2])
        if lo is None or hi is None or lo < -(2**31) or hi > 2**31 - 1:
            return None, None
        return (lo, hi), following


def _form(consts: list[np.ndarray], x_max: int) -> tuple[str, dict[str, np.ndarray] | None]:
    """The cheapest int32 form the chain's constants allow: 8- and 16-bit inputs the split form
    (no high product), else the high product (constants None: none fits).

    A chain on its own never takes the shift form, though it may have one (:attr:`_Chain.shift`):
    which chains do depends on the calibration (which operand of a concatenation has the largest
    scale, say), and the kernels, hence a tuned database's key, must not. A residual sum takes
    it for its coarser operand through a flag (:class:`_Sum`)."""
    if x_max <= SMALL_INPUT:
        constants = split_constants(*consts, x_max)
        if constants is not None:
            return "split", constants
    return "high", int32_constants(*consts, x_max)


def _summable(chain: _Chain | None) -> bool:
    return (
        chain is not None
        and chain.form == "split"
        and chain.clip is None
        and chain.out_dtype == "int32"
    )


def _static_shape(expr: relax.Expr) -> tuple[int, ...] | None:
    shape = getattr(expr.ty, "shape", None)
    if shape is None or not all(isinstance(d, tvm.tirx.IntImm) for d in shape):
        return None
    return tuple(int(d) for d in shape)


@relax.expr_functor.mutator
class _Rewriter(relax.PyExprMutator):
    def __init__(
        self, mod: tvm.IRModule, chains: dict[relax.Var, _Chain], sums: dict[relax.Var, _Sum]
    ):
        super().__init__(mod)
        self.chains = chains
        self.sums = sums

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        chain = self.chains.get(binding.var)
        if binding.var in self.sums:
            self._emit_sum(binding.var, self.sums[binding.var])
            return
        if chain is None:
            super().visit_var_binding_(binding)
            return
        compute = requantize_int32 if chain.form == "high" else requantize_int32_split
        args = [relax.const(v, "int32") for v in chain.constants.values()]
        if chain.form == "high" and str(chain.x.ty.dtype) == "int32":
            args[0] = None  # an int32 input is never pre-shifted (int32_constants)
        call = self.builder_.call_te(
            compute,
            self.visit_expr(chain.x),
            *args,
            chain.clip,
            chain.out_dtype,
            primfunc_name_hint="requantize_int32",
        )
        self.set_var_remap(binding.var, self.builder_.emit(call, name_hint=binding.var.name))

    def _emit_sum(self, var: relax.Var, total: _Sum) -> None:
        flag = np.full(total.shift_left.shape, int(total.coarse_is_b), np.int32)
        constants = [flag, total.shift_left, *total.split.values()]
        call = self.builder_.call_te(
            requantized_sum,
            self.visit_expr(total.a.x),
            self.visit_expr(total.b.x),
            *(relax.const(v, "int32") for v in constants),
            subtract=total.subtract,
            primfunc_name_hint="requantized_sum",
        )
        self.set_var_remap(var, self.builder_.emit(call, name_hint=var.name))


@tvm.transform.module_pass(opt_level=0, name="RequantizeInt32")
class RequantizeInt32:
    """Rewrite the int64 requantization chains of every Relax function into int32 kernels
    (exact: see the module docstring); the dead int64 chains are removed."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        chains: dict[relax.Var, _Chain] = {}
        sums: dict[relax.Var, _Sum] = {}
        for func in mod.functions.values():
            if isinstance(func, relax.Function) and isinstance(func.body, relax.SeqExpr):
                for block in func.body.blocks:
                    if isinstance(block, relax.DataflowBlock):
                        finder = _Finder(block)
                        found = finder.chains()
                        summed = finder.sums(found)
                        for var in summed:  # its operands' chains: the sum kernel does them
                            for operand in finder.values[var].args:
                                found.pop(operand, None)
                        sums.update(summed)
                        chains.update(found)
        if not chains and not sums:
            return mod
        rewriter = _Rewriter(mod, chains, sums)
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                rewriter.builder_.update_func(gv, rewriter.visit_expr(func))
        out = rewriter.builder_.get()
        return relax.transform.DeadCodeElimination()(out)
