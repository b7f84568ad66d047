"""The integer-only checker finds every floating-point dtype, and nothing in integer modules."""

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.script import tirx as T

from tvm_intsmooth.analysis import Finding, check_integer_only
from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.pipeline.build import lower


def integer_module() -> tvm.IRModule:
    """int8 conv -> int32 -> int64 fixed-point requantization -> int8, plus a bool output."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 3, 6, 6), "int8"))
    weight = (np.arange(4 * 3 * 3 * 3).reshape(4, 3, 3, 3) % 7 - 3).astype(np.int8)
    with bb.function("main", [x]):
        with bb.dataflow():
            acc = bb.emit(
                relax.op.nn.conv2d(x, relax.const(weight, "int8"), padding=1, out_dtype="int32")
            )
            wide = bb.emit(relax.op.astype(acc, "int64"))
            scaled = bb.emit(relax.op.multiply(wide, relax.const(1518500250, "int64")))
            shifted = bb.emit(relax.op.right_shift(scaled, relax.const(36, "int64")))
            clipped = bb.emit(relax.op.clip(shifted, -128, 127))
            out = bb.emit(relax.op.astype(clipped, "uint8"))
            negative = bb.emit(relax.op.less(acc, relax.const(0, "int32")))
            result = bb.emit_output(relax.Tuple([out, negative]))
        bb.emit_func_output(result)
    return bb.get()


def relax_module(body) -> tvm.IRModule:
    """A one-function module: ``body(bb, x)`` emits bindings and returns the output expression."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((2, 3), "int8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(body(bb, x))
        bb.emit_func_output(out)
    return bb.get()


@T.prim_func
def integer_prim_func(a: T.handle, flags: T.Buffer((4,), "bool"), out: T.Buffer((4,), "uint8")):
    data = T.match_buffer(a, (4,), "int16")
    for i in range(4):
        flags[i] = data[i] > T.int16(0)
        out[i] = T.Cast("uint8", T.Select(flags[i], data[i], T.int16(0)) >> T.int16(1))


@T.prim_func
def float_buffer_prim_func(A: T.Buffer((4,), "float32"), B: T.Buffer((4,), "int32")):
    for i in range(4):
        B[i] = T.Cast("int32", A[i])


@T.prim_func
def float_intermediate_prim_func(A: T.Buffer((4,), "int32"), B: T.Buffer((4,), "int32")):
    for i in range(4):
        B[i] = T.Cast("int32", T.Cast("float32", A[i]) * T.float32(0.5))


def test_integer_module_clean_before_and_after_legalization():
    mod = integer_module()
    assert check_integer_only(mod) == []
    legalized = relax.transform.LegalizeOps()(mod)
    assert len([f for f in legalized.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]) >= 5
    assert check_integer_only(legalized) == []


def test_integer_module_clean_after_lowering():
    assert check_integer_only(lower(integer_module(), "host")) == []


def test_bool_uint_and_handle_are_integer():
    assert check_integer_only(tvm.IRModule({"ok": integer_prim_func})) == []


def test_float32_param():
    y = relax.Var("y", relax.TensorType((2, 3), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [y]):
        out = bb.emit(relax.op.astype(y, "int8"))
        bb.emit_func_output(out)
    mod = bb.get()
    assert check_integer_only(mod) == [Finding("main", "param", "y", "float32")]


def test_float_constant_named_by_its_call_and_binding():
    def body(bb, x):
        scale = relax.const(np.array([2.5, 1.5, 0.5], "float32"))
        as_int = bb.emit(relax.op.astype(scale, "int32"))
        return relax.op.multiply(relax.op.astype(x, "int32"), as_int)

    mod = relax_module(body)
    findings = check_integer_only(mod)
    constants = [f for f in findings if f.kind == "constant"]
    assert len(constants) == 1 and constants[0].dtype == "float32"
    assert constants[0].function == "main"
    assert "argument 0 of relax.astype" in constants[0].where
    # After legalization the constant feeds a call_tir, and the cast PrimFunc reads float32.
    legalized = check_integer_only(relax.transform.LegalizeOps()(mod))
    assert any(f.function == "main" and f.kind == "constant" for f in legalized)
    assert any(f.kind == "param" and f.dtype == "float32" for f in legalized)


def test_astype_float16_found_before_and_after_legalization():
    def body(bb, x):
        half = bb.emit(relax.op.astype(x, "float16"))
        return relax.op.astype(half, "int8")

    mod = relax_module(body)
    findings = check_integer_only(mod)
    assert [(f.kind, f.dtype, f.op) for f in findings] == [("var", "float16", "relax.astype")]
    legalized = relax.transform.LegalizeOps()(mod)
    found = check_integer_only(legalized)
    # One PrimFunc writes the float16 tensor, the other reads it, and main binds it.
    assert {f.function for f in found if f.dtype == "float16"} == {"cast", "cast1", "main"}
    assert Finding("cast", "param", "compute", "float16") in found
    assert Finding("cast1", "param", "lv", "float16") in found


def test_float_found_in_lowered_module():
    mod = relax_module(
        lambda bb, x: relax.op.astype(bb.emit(relax.op.astype(x, "float16")), "int8")
    )
    found = check_integer_only(lower(mod, "host"))
    # The default CPU pipeline fuses both casts: the float16 intermediate is allocated inside
    # the fused PrimFunc, and its cast and expression are found there.
    kinds = {f.kind for f in found}
    assert {"allocation", "cast"} <= kinds, found
    assert all(f.dtype == "float16" for f in found)


def test_prim_func_float_buffer():
    found = check_integer_only(tvm.IRModule({"f": float_buffer_prim_func}))
    assert Finding("f", "param", "A", "float32") in found
    assert not any(f.where == "B" for f in found)


def test_prim_func_float_intermediate():
    found = check_integer_only(tvm.IRModule({"g": float_intermediate_prim_func}))
    assert {f.kind for f in found} == {"cast", "float-imm", "expr"}
    assert all(f.function == "g" and f.dtype == "float32" for f in found)
    cast = next(f for f in found if f.kind == "cast")
    assert cast.where == 'T.Cast("float32", A[i])'
    assert not any(f.kind == "param" for f in found)


def test_float_allocation_in_prim_func():
    @T.prim_func
    def alloc(A: T.Buffer((4,), "int32"), B: T.Buffer((4,), "int32")):
        tmp = T.alloc_buffer((4,), "float64")
        for i in range(4):
            tmp[i] = T.Cast("float64", A[i])
        for i in range(4):
            B[i] = T.Cast("int32", tmp[i])

    found = check_integer_only(tvm.IRModule({"alloc": alloc}))
    assert Finding("alloc", "allocation", "tmp", "float64") in found


def test_tuple_field_of_return_type():
    y = relax.Var("y", relax.TensorType((2,), "int8"))
    bb = relax.BlockBuilder()
    with bb.function("main", [y]):
        pair = bb.emit(relax.Tuple([y, relax.op.astype(y, "bfloat16")]))
        bb.emit_func_output(pair)
    found = check_integer_only(bb.get())
    assert Finding("main", "return", "value[1]", "bfloat16") in found


def test_float_only_operator_on_integers():
    x = relax.Var("x", relax.TensorType((1, 3, 4, 4), "int8"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        out = bb.emit(relax.op.image.resize2d(x, (8, 8)))
        bb.emit_func_output(out)
    mod = bb.get()
    found = check_integer_only(mod)
    assert [(f.kind, f.op, f.dtype) for f in found] == [("op", "relax.image.resize2d", "")]
    legalized = check_integer_only(relax.transform.LegalizeOps()(mod))
    assert legalized and {f.function for f in legalized} == {"resize2d"}


def test_raise_lists_every_finding():
    mod = tvm.IRModule({"g": float_intermediate_prim_func, "f": float_buffer_prim_func})
    found = check_integer_only(mod)
    assert len(found) >= 4 and {f.function for f in found} == {"f", "g"}
    with pytest.raises(IntSmoothError) as err:
        check_integer_only(mod, raise_on_error=True)
    message = str(err.value)
    assert f"{len(found)} floating-point occurrence" in message
    for finding in found:
        assert str(finding) in message


def test_rejects_non_module():
    with pytest.raises(IntSmoothError, match="IRModule"):
        check_integer_only(float_buffer_prim_func)
