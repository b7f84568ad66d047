"""ARM tensor intrinsics: TVM's own arm_cpu ones (they build in TVM 0.27 when cross-compiling), and
the same instructions for uint8 data, so that one blocked layout (uint8 activations) serves x86
and ARM.

- ``dot_4x4_i8i8s32_sdot`` (Armv8.2 dot product, ``+dotprod``: Raspberry Pi 5's Cortex-A76): one
  ``sdot`` computes 4 int32 lanes, each the sum of 4 int8 x int8 products. Exact.
- ``dot_4x4_i8i8s32_neon`` (plain NEON: Raspberry Pi 4's Cortex-A72): ``smull`` (int8 x int8 ->
  int16 products, exact: |product| <= 2^14), ``saddlp`` (pairs -> int32) and ``addp``. Exact.
- ``intsmooth_dot_4x4_u8i8i32_sdot`` / ``..._neon``: the same instructions with a uint8 data
  operand, reinterpreted as int8. Exact if and only if every data byte is at most 127 (then the
  byte means the same in both types), which post-ReLU activations are (docs/integer_only.md).

The 16 output lanes of the blocked layout are 4 calls (weights ``[.., 16, 4]`` split into four
contiguous 4 x 4 blocks). Loading this module registers all four.
"""

from __future__ import annotations

from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T

from tvm_intsmooth.compat import load_stock_intrinsics
from tvm_intsmooth.schedule.intrinsics.x86 import SCOPES, broadcast_group, dot_desc, scoped_name

_arm_cpu = load_stock_intrinsics("dot_product_common") and load_stock_intrinsics("arm_cpu")

SDOT_S8S8 = _arm_cpu.ARM_DOT_4x4_i8_SDOT_INTRIN
NEON_S8S8 = _arm_cpu.ARM_DOT_4x4_i8_NEON_INTRIN
SDOT_U8S8 = "intsmooth_dot_4x4_u8i8i32_sdot"
NEON_U8S8 = "intsmooth_dot_4x4_u8i8i32_neon"
MAX_UNSIGNED = 127  # largest uint8 data byte that means the same as int8


def _u8_sdot_impl(a_scope: str = "global", c_scope: str = "global"):
    @T.prim_func(s_tir=True)
    def func(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (4,), "uint8", offset_factor=1, scope=a_scope)
        B = T.match_buffer(b, (4, 4), "int8", offset_factor=1)
        C = T.match_buffer(c, (4,), "int32", offset_factor=1, scope=c_scope)
        with T.sblock("root"):
            T.reads(C[0:4], A[0:4], B[0:4, 0:4])
            T.writes(C[0:4])
            C[T.ramp(T.int32(0), 1, 4)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.sdot.v4i32.v16i8"),
                C.vload([0], dtype="int32x4"),
                broadcast_group(A, "uint8x4", 4, "int8x16"),
                B.vload([0, 0], dtype="int8x16"),
                dtype="int32x4",
            )

    return func


def _pair_sums(a, b_half):
    """``smull`` of the data group (twice) by 8 weight bytes, adjacent int16 products summed
    into 4 int32 (``saddlp``); an expression, not a binding (see ``x86.broadcast_group``)."""
    return T.call_llvm_pure_intrin(
        T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.saddlp.v4i32.v8i16"),
        T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.smull.v8i16"),
            broadcast_group(a, "uint8x4", 2, "int8x8"),
            b_half,
            dtype="int16x8",
        ),
        dtype="int32x4",
    )


def _u8_neon_impl(a_scope: str = "global", c_scope: str = "global"):
    @T.prim_func(s_tir=True)
    def func(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (4,), "uint8", offset_factor=1, scope=a_scope)
        B = T.match_buffer(b, (4, 4), "int8", offset_factor=1)
        C = T.match_buffer(c, (4,), "int32", offset_factor=1, scope=c_scope)
        with T.sblock("root"):
            T.reads(C[0:4], A[0:4], B[0:4, 0:4])
            T.writes(C[0:4])
            C[T.ramp(T.int32(0), 1, 4)] += T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.addp.v4i32"),
                _pair_sums(A, T.vectorlow(B.vload([0, 0], dtype="int8x16"), dtype="int8x8")),
                _pair_sums(A, T.vectorhigh(B.vload([0, 0], dtype="int8x16"), dtype="int8x8")),
                dtype="int32x4",
            )

    return func


def register() -> None:
    """Register the uint8-data ARM intrinsics, a variant per scope of the data and the
    accumulators (:func:`~tvm_intsmooth.schedule.intrinsics.x86.scoped_name`); TVM's int8
    ones are registered on load, for global memory only."""
    for name, impl in ((SDOT_U8S8, _u8_sdot_impl), (NEON_U8S8, _u8_neon_impl)):
        for scopes in SCOPES:
            TensorIntrin.register(
                scoped_name(name, *scopes),
                dot_desc("uint8", 4, *scopes, lanes=4),
                impl(*scopes),
                override=True,
            )
