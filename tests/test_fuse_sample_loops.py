"""FuseSampleLoops: the golden rewrite of a run of per-sample kernels into one parallel sample
loop, the values it computes (against numpy), and the kernels that must end a run: one that
reads or writes another sample's values, one that reduces over the batch."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax, tirx
from tvm.script import tirx as T

from tvm_intsmooth.transform import FuseSampleLoops


def _same(n):
    return n


def _adding_one(written_row=_same) -> tirx.PrimFunc:
    """A loop over the samples; iteration n writes sample ``written_row(n)``."""

    @T.prim_func(private=True, s_tir=True)
    def add_one(x: T.Buffer((4, 8), "int32"), y: T.Buffer((4, 8), "int32")):
        T.func_attr({"tirx.is_scheduled": True, "tirx.noalias": True})
        for n in T.parallel(4):
            for i in range(8):
                with T.sblock("add_one"):
                    vn, vi = T.axis.remap("SS", [n, i])
                    y[written_row(vn), vi] = x[vn, vi] + 1

    return add_one


def _doubling(read_row=_same) -> tirx.PrimFunc:
    """The samples fused with the halves of a row (``f = n * 2 + half``); sample n of z from
    sample ``read_row(n)`` of y."""

    @T.prim_func(private=True, s_tir=True)
    def double_halves(y: T.Buffer((4, 8), "int32"), z: T.Buffer((4, 8), "int32")):
        T.func_attr({"tirx.is_scheduled": True, "tirx.noalias": True})
        for f in T.parallel(8):
            for i in range(4):
                with T.sblock("double"):
                    vn = T.axis.spatial(4, f // 2)
                    vi = T.axis.spatial(8, f % 2 * 4 + i)
                    z[vn, vi] = y[read_row(vn), vi] * 2

    return double_halves


add_one, double_halves = _adding_one(), _doubling()
add_one_flipped = _adding_one(lambda n: 3 - n)
double_next_sample = _doubling(lambda n: (n + 1) % 4)


@T.prim_func(private=True, s_tir=True)
def add_one_through_a_scalar(x: T.Buffer((4, 8), "int32"), y: T.Buffer((4, 8), "int32")):
    """add_one through a 0-d scratch buffer (private to each iteration)."""
    T.func_attr({"tirx.is_scheduled": True, "tirx.noalias": True})
    scalar = T.sblock_alloc_buffer((), "int32")
    for n in T.parallel(4):
        for i in range(8):
            with T.sblock("add_one"):
                vn, vi = T.axis.remap("SS", [n, i])
                scalar[()] = x[vn, vi] + 1
                y[vn, vi] = scalar[()]


@T.prim_func(private=True, s_tir=True)
def column_sums(z: T.Buffer((4, 8), "int32"), s: T.Buffer((8,), "int32")):
    """A sum over the batch."""
    T.func_attr({"tirx.is_scheduled": True, "tirx.noalias": True})
    for i in T.parallel(8):
        for n in range(4):
            with T.sblock("sum"):
                vi, vn = T.axis.remap("SR", [i, n])
                with T.init():
                    s[vi] = 0
                s[vi] = s[vi] + z[vn, vi]


def _main(kernels: list[tuple[str, tirx.PrimFunc, int]], returned: list[int]) -> tvm.IRModule:
    """``main(x)``: the kernels called in a chain (name, PrimFunc, output rows), each on the
    previous one's output; returns the outputs at the ``returned`` positions."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((4, 8), "int32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            values, value = [], x
            for i, (name, func, rows) in enumerate(kernels):
                out_ty = relax.TensorType((rows, 8) if rows == 4 else (rows,), "int32")
                call = relax.call_tir(bb.add_func(func, name), [value], out_ty)
                last = returned == [len(kernels) - 1] and i == len(kernels) - 1
                value = bb.emit_output(call) if last else bb.emit(call)
                values.append(value)
            out = value if last else bb.emit_output(relax.Tuple([values[i] for i in returned]))
        bb.emit_func_output(out)
    return bb.get()


def _module(first=add_one, second=double_halves, return_y: bool = False) -> tvm.IRModule:
    """main: y = first(x), z = second(y), s = column_sums(z); returns s (and y)."""
    kernels = [("add_one", first, 4), ("double_halves", second, 4), ("column_sums", column_sums, 8)]
    return _main(kernels, [2, 0] if return_y else [2])


@T.prim_func(private=True, s_tir=True)
def per_sample_add_one(
    x: T.Buffer((T.int64(4), T.int64(8)), "int32"),
    z: T.Buffer((T.int64(4), T.int64(8)), "int32", elem_offset=0),
):
    """What FuseSampleLoops makes of add_one and double_halves."""
    T.func_attr({"tirx.is_scheduled": True, "tirx.noalias": True})
    y = T.sblock_alloc_buffer((T.int64(4), T.int64(8)), "int32", elem_offset=0)
    for sample in T.parallel(4):
        for i in range(8):
            with T.sblock("add_one"):
                vn, vi = T.axis.remap("SS", [sample, i])
                y[vn, vi] = x[vn, vi] + 1
        for f_in_sample, i in T.grid(2, 4):
            with T.sblock("double"):
                vn = T.axis.spatial(4, (sample * 2 + f_in_sample) // 2)
                vi = T.axis.spatial(8, (sample * 2 + f_in_sample) % 2 * 4 + i)
                z[vn, vi] = y[vn, vi] * 2


def _run(mod: tvm.IRModule, x: np.ndarray):
    vm = relax.VirtualMachine(tvm.compile(mod, target="llvm"), tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(x))
    return [o.numpy() for o in out] if isinstance(out, tvm.ir.Array | list | tuple) else out.numpy()


def _per_sample_functions(mod: tvm.IRModule) -> list[str]:
    return [gv.name_hint for gv, _ in mod.functions_items() if "per_sample" in gv.name_hint]


def test_a_run_of_per_sample_kernels_becomes_one_parallel_sample_loop():
    expected = _main(
        [("per_sample_add_one", per_sample_add_one, 4), ("column_sums", column_sums, 8)], [1]
    )
    tvm.ir.assert_structural_equal(FuseSampleLoops()(_module()), expected)


def test_the_fused_kernel_computes_what_the_kernels_did():
    x = np.random.default_rng(0).integers(-1000, 1000, size=(4, 8)).astype(np.int32)
    expected = ((x + 1) * 2).sum(axis=0)
    np.testing.assert_array_equal(_run(_module(), x), expected)
    np.testing.assert_array_equal(_run(FuseSampleLoops()(_module()), x), expected)


def test_a_value_used_after_the_run_is_one_of_its_outputs():
    before = _module(return_y=True)
    after = FuseSampleLoops()(before)
    assert _per_sample_functions(after) == ["per_sample_add_one"]
    x = np.arange(32, dtype=np.int32).reshape(4, 8)
    for got, want in zip(_run(after, x), _run(before, x), strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_kernel_reading_another_samples_value_ends_the_run():
    before = _module(second=double_next_sample)
    tvm.ir.assert_structural_equal(FuseSampleLoops()(before), before)


def test_a_kernel_writing_another_samples_slice_is_left_alone():
    before = _module(first=add_one_flipped)
    tvm.ir.assert_structural_equal(FuseSampleLoops()(before), before)


def test_a_zero_dimensional_scratch_buffer_joins_the_run():
    before = _module(first=add_one_through_a_scalar)
    after = FuseSampleLoops()(before)
    assert _per_sample_functions(after) == ["per_sample_add_one"]
    x = np.arange(32, dtype=np.int32).reshape(4, 8)
    np.testing.assert_array_equal(_run(after, x), ((x + 1) * 2).sum(axis=0))
