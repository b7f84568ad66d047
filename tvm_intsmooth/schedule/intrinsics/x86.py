"""x86 tensor intrinsics: AVX-512 VNNI, AVX2 (no VNNI) and the int16 pair sum of the first layer.

All three compute ``C[i] += sum_k A[k] * B[i, k]`` over int32 accumulators ``C[0:16]``: one
broadcast group ``A[0:R]`` of the data times a ``16 x R`` block of the packed weights, the block
shape of ``topi.nn.conv2d_NCHWc_int8`` (weights ``[K/16, C/cb, KH, KW, cb/R, 16, R]``).

- ``intsmooth_dot_16x4_u8i8i32_vnni``: one ``vpdpbusd`` (uint8 x int8, four products summed into
  each int32 lane, no intermediate rounding or saturation): exact for every input.
  TVM 0.27's stock ``dot_16x4_vnni`` passes the multiplicands as ``16 x i32``; LLVM 22's
  ``llvm.x86.avx512.vpdpbusd.512`` takes ``64 x i8``, so it fails LLVM's verifier. This one
  reinterprets the operands as bytes, and :func:`register` also puts it under the stock name
  ``dot_16x4_vnni``, which MetaSchedule's VNNI schedule rules look up.
- ``intsmooth_dot_16x4_u8i8i32_avx2``: two 8-lane ymm halves, each ``vpmaddubsw`` (uint8 x int8
  products, adjacent pairs summed into int16 WITH SATURATION) then ``vpmaddwd`` by ones (int16 pairs
  summed into int32), added to the accumulator. Exact if and only if no pair sum leaves int16:
  guaranteed when every uint8 operand is at most 127 (2 * 127 * 128 = 32,512 < 32,767), which the
  integer-only contract gives for post-ReLU inputs (docs/integer_only.md). A data byte of 255 can
  saturate (255 * 127 * 2 = 64,770), so shifted (0..255) inputs must not use it.
- ``intsmooth_dot_16x2_i16i8i32_avx512`` / ``..._avx2``: int16 data x int8 weights (sign-extended
  to int16), ``vpmaddwd``: products of two int16 summed into int32, exact for int8 weights
  (|sum| <= 2 * 32,768 * 128 = 2^23). For the first layer's int16 noisy pixels.
"""

from __future__ import annotations

from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T

from tvm_intsmooth.compat import load_stock_intrinsics, replace_stock_intrinsic

VNNI_U8S8 = "intsmooth_dot_16x4_u8i8i32_vnni"
AVX2_U8S8 = "intsmooth_dot_16x4_u8i8i32_avx2"
AVX512_S16S8 = "intsmooth_dot_16x2_i16i8i32_avx512"
AVX2_S16S8 = "intsmooth_dot_16x2_i16i8i32_avx2"
STOCK_VNNI = "dot_16x4_vnni"  # TVM 0.27's name, broken with LLVM 22, replaced by ours
AVX2_MAX_UNSIGNED = 127  # largest uint8 operand for which the AVX2 intrinsic is exact


SCOPES = (("global", "global"), ("global", "local"), ("local", "global"), ("local", "local"))


def scoped_name(name: str, data_scope: str = "global", acc_scope: str = "global") -> str:
    """The name of intrinsic ``name``'s variant whose data operand lives in ``data_scope`` and
    accumulators in ``acc_scope`` (tensorize matches buffer scopes): ``name`` itself for
    global memory, else ``name.<data>_<acc>``."""
    if (data_scope, acc_scope) == ("global", "global"):
        return name
    return f"{name}.{data_scope}_{acc_scope}"


def dot_desc(
    data_dtype: str,
    reduce: int,
    a_scope: str = "global",
    c_scope: str = "global",
    lanes: int = 16,
):
    """The computation every dot-product intrinsic here implements (the ARM ones too, with
    4 lanes): ``lanes`` int32 accumulators, ``reduce`` products each."""

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (reduce,), data_dtype, offset_factor=1, scope=a_scope)
        B = T.match_buffer(b, (lanes, reduce), "int8", offset_factor=1)
        C = T.match_buffer(c, (lanes,), "int32", offset_factor=1, scope=c_scope)
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:reduce], B[0:lanes, 0:reduce])
            T.writes(C[0:lanes])
            for i, k in T.grid(lanes, reduce):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")

    return desc


def broadcast_group(a, group: str, copies: int, dtype: str):
    """The data operand's group ``A[0:R]`` (one 32-bit word, ``group`` e.g. ``"uint8x4"``)
    repeated ``copies`` times, as ``dtype``. One expression on purpose: TVMScript makes a named
    intermediate of an intrinsic's body a "local" buffer, which TVM 0.27 allocates with
    TVMBackendAllocWorkspace and goes through memory at every call."""
    word = T.reinterpret(a.vload([0], group), dtype="int32")
    return T.reinterpret(T.broadcast(word, copies), dtype=dtype)


def _vnni_impl(a_scope: str = "global", c_scope: str = "global"):
    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (4,), "uint8", offset_factor=1, scope=a_scope)
        B = T.match_buffer(b, (16, 4), "int8", offset_factor=1)
        C = T.match_buffer(c, (16,), "int32", offset_factor=1, scope=c_scope)
        with T.sblock("root"):
            T.reads(C[0:16], A[0:4], B[0:16, 0:4])
            T.writes(C[0:16])
            C[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
                C.vload([0], dtype="int32x16"),
                broadcast_group(A, "uint8x4", 16, "uint8x64"),
                B.vload([0, 0], dtype="int8x64"),
                dtype="int32x16",
            )

    return impl


def _avx2_impl(a_scope: str = "global", c_scope: str = "global"):
    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (4,), "uint8", offset_factor=1, scope=a_scope)
        B = T.match_buffer(b, (16, 4), "int8", offset_factor=1)
        C = T.match_buffer(c, (16,), "int32", offset_factor=1, scope=c_scope)
        with T.sblock("root"):
            T.reads(C[0:16], A[0:4], B[0:16, 0:4])
            T.writes(C[0:16])
            # the two 8-lane halves written out: a loop here would put one loop variable into
            # every place the intrinsic is used
            C[T.ramp(T.int32(0), 1, 8)] = C[T.ramp(T.int32(0), 1, 8)] + T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"),
                T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.ub.sw"),
                    broadcast_group(A, "uint8x4", 8, "uint8x32"),
                    B.vload([0, 0], dtype="int8x32"),
                    dtype="int16x16",
                ),
                T.broadcast(T.int16(1), 16),
                dtype="int32x8",
            )
            C[T.ramp(T.int32(8), 1, 8)] = C[T.ramp(T.int32(8), 1, 8)] + T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"),
                T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.ub.sw"),
                    broadcast_group(A, "uint8x4", 8, "uint8x32"),
                    B.vload([8, 0], dtype="int8x32"),
                    dtype="int16x16",
                ),
                T.broadcast(T.int16(1), 16),
                dtype="int32x8",
            )

    return impl


def _avx512_s16_impl(a_scope: str = "global", c_scope: str = "global"):
    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (2,), "int16", offset_factor=1, scope=a_scope)
        B = T.match_buffer(b, (16, 2), "int8", offset_factor=1)
        C = T.match_buffer(c, (16,), "int32", offset_factor=1, scope=c_scope)
        with T.sblock("root"):
            T.reads(C[0:16], A[0:2], B[0:16, 0:2])
            T.writes(C[0:16])
            C[T.ramp(T.int32(0), 1, 16)] = C.vload([0], dtype="int32x16") + T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx512.pmaddw.d.512"),
                broadcast_group(A, "int16x2", 16, "int16x32"),
                T.cast(B.vload([0, 0], dtype="int8x32"), "int16x32"),
                dtype="int32x16",
            )

    return impl


def _avx2_s16_impl(a_scope: str = "global", c_scope: str = "global"):
    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (2,), "int16", offset_factor=1, scope=a_scope)
        B = T.match_buffer(b, (16, 2), "int8", offset_factor=1)
        C = T.match_buffer(c, (16,), "int32", offset_factor=1, scope=c_scope)
        with T.sblock("root"):
            T.reads(C[0:16], A[0:2], B[0:16, 0:2])
            T.writes(C[0:16])
            C[T.ramp(T.int32(0), 1, 8)] = C[T.ramp(T.int32(0), 1, 8)] + T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"),
                broadcast_group(A, "int16x2", 8, "int16x16"),
                T.cast(B.vload([0, 0], dtype="int8x16"), "int16x16"),
                dtype="int32x8",
            )
            C[T.ramp(T.int32(8), 1, 8)] = C[T.ramp(T.int32(8), 1, 8)] + T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"),
                broadcast_group(A, "int16x2", 8, "int16x16"),
                T.cast(B.vload([8, 0], dtype="int8x16"), "int16x16"),
                dtype="int32x8",
            )

    return impl


def register() -> None:
    """Register the x86 intrinsics (a variant per scope of the data and the accumulators: see
    :func:`scoped_name`), and ours under the stock VNNI name (idempotent)."""
    load_stock_intrinsics("x86")  # TVM's registrations first, so that ours replace theirs
    replace_stock_intrinsic(STOCK_VNNI, dot_desc("uint8", 4), _vnni_impl())
    for name, dtype, reduce, impl in (
        (VNNI_U8S8, "uint8", 4, _vnni_impl),
        (AVX2_U8S8, "uint8", 4, _avx2_impl),
        (AVX512_S16S8, "int16", 2, _avx512_s16_impl),
        (AVX2_S16S8, "int16", 2, _avx2_s16_impl),
    ):
        for scopes in SCOPES:
            TensorIntrin.register(
                scoped_name(name, *scopes), dot_desc(dtype, reduce, *scopes), impl(*scopes),
                override=True,
            )  # fmt: skip
    register_high()


# -- the high product of the int32 requantization (schedule/requantize.py) ---------------------
HIGH_AVX512 = "intsmooth_mulhs_16_i32_avx512"
HIGH_AVX2 = "intsmooth_mulhs_16_i32_avx2"
_LOW = -(2**32)  # int64 mask of the high 32 bits


def _high_desc(b_lanes: int, a_scope: str, c_scope: str):
    """``C[i] = (int64(A[i]) * int64(B[i])) >> 32`` for 16 lanes (``b_lanes`` 1: one B)."""

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (16,), "int32", offset_factor=1, scope=a_scope)
        B = T.match_buffer(b, (b_lanes,), "int32", offset_factor=1)
        C = T.match_buffer(c, (16,), "int32", offset_factor=1, scope=c_scope)
        with T.sblock("root"):
            T.reads(A[0:16], B[0:b_lanes])
            T.writes(C[0:16])
            for i in T.serial(16):
                with T.sblock("update"):
                    vi = T.axis.remap("S", [i])
                    C[vi] = T.Cast(
                        "int32",
                        T.shift_right(
                            T.Cast("int64", A[vi]) * T.Cast("int64", B[vi % b_lanes]), T.int64(32)
                        ),
                    )

    return desc


def _high_words(a, b, lanes: int):
    """High words of the signed products of int32 ``a`` and ``b`` (``lanes`` of them), from two
    32 x 32 -> 64 bit multiplies of the even and the odd lanes (``vpmuldq``)."""
    half = lanes // 2
    a64 = T.reinterpret(a, dtype=f"int64x{half}")
    b64 = T.reinterpret(b, dtype=f"int64x{half}")
    k32 = T.broadcast(T.int64(32), half)
    even = T.shift_right(T.shift_left(a64, k32), k32) * T.shift_right(T.shift_left(b64, k32), k32)
    odd = T.shift_right(a64, k32) * T.shift_right(b64, k32)
    low_mask = T.broadcast(T.int64(0xFFFFFFFF), half)
    words = T.bitwise_or(
        T.bitwise_and(T.shift_right(even, k32), low_mask),
        T.bitwise_and(odd, T.broadcast(T.int64(_LOW), half)),
    )
    return T.reinterpret(words, dtype=f"int32x{lanes}")


def _high_impl(b_lanes: int, a_scope: str, c_scope: str, width: int):
    """x86 form of :func:`_high_desc` on vectors of ``width`` int32 lanes (16: AVX-512, 8:
    AVX2, two halves)."""

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (16,), "int32", offset_factor=1, scope=a_scope)
        B = T.match_buffer(b, (b_lanes,), "int32", offset_factor=1)
        C = T.match_buffer(c, (16,), "int32", offset_factor=1, scope=c_scope)
        with T.sblock("root"):
            T.reads(A[0:16], B[0:b_lanes])
            T.writes(C[0:16])
            for part in T.unroll(16 // width):
                C[T.ramp(part * width, 1, width)] = _high_words(
                    A.vload([part * width], dtype=f"int32x{width}"),
                    B.vload([part * width], dtype=f"int32x{width}")
                    if b_lanes == 16
                    else T.broadcast(B[0], width),
                    width,
                )

    return impl


def high_name(base: str, b_lanes: int, a_scope: str, c_scope: str) -> str:
    """The registered name of a high-product intrinsic variant."""
    return f"{base}.b{b_lanes}.{a_scope}_{c_scope}"


def register_high() -> None:
    """Register the high-product intrinsics (per-lane or one multiplier, each scope)."""
    for base, width in ((HIGH_AVX512, 16), (HIGH_AVX2, 8)):
        for b_lanes in (16, 1):
            for scopes in SCOPES:
                TensorIntrin.register(
                    high_name(base, b_lanes, *scopes),
                    _high_desc(b_lanes, *scopes),
                    _high_impl(b_lanes, *scopes, width),
                    override=True,
                )
