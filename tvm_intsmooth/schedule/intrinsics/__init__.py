"""Tensor intrinsics for the blocked int8 kernels, one module per ISA, and the lookup.

Importing this package registers (``tvm.s_tir.TensorIntrin.register``):

- ``intsmooth_dot_16x4_u8i8i32_vnni``: AVX-512 VNNI ``vpdpbusd``, working with TVM 0.27's LLVM 22
  (the stock ``dot_16x4_vnni`` does not build there);
- ``intsmooth_dot_16x4_u8i8i32_avx2``: AVX2 ``vpmaddubsw + vpmaddwd``, exact for data <= 127;
- ``intsmooth_dot_16x2_i16i8i32_avx512`` / ``..._avx2``: int16 x int8 ``vpmaddwd`` (first layer);
- ``intsmooth_dot_4x4_u8i8i32_sdot`` / ``..._neon``: ARM sdot / smull with uint8 data <= 127;
- and uses TVM's own ``dot_4x4_i8i8s32_sdot`` (``+dotprod``) and ``dot_4x4_i8i8s32_neon`` (smull)
  for int8 data.

Use :func:`tensor_intrin_for` to pick one for a target, and :func:`tensorize_blocked_conv` for the
fixed untuned schedule of a blocked conv that tensorizes with it.

MetaSchedule: importing this package also registers our VNNI intrinsic under TVM's own name
``dot_16x4_vnni``, which the x86 "from-target" schedule rules look up (TVM's own one fails to
build with LLVM 22, so every tensorized candidate failed). TVM's x86 and arm_cpu intrinsic modules
are loaded on their own first (:func:`tvm_intsmooth.compat.load_stock_intrinsics`), so a later
``import tvm.s_tir.tensor_intrin`` (TuneContext does one) does not register TVM's version over
ours. TVM has no rule for AVX2 int8: tune with
``MultiLevelTilingWithIntrin(intrin_name=tensor_intrin_for("x86-avx2").name, ...)``.
"""

from tvm_intsmooth import compat
from tvm_intsmooth.schedule.intrinsics import arm, x86
from tvm_intsmooth.schedule.intrinsics.lookup import (
    BLOCK_LANES,
    KernelIntrin,
    high_intrin_for,
    tensor_intrin_for,
)
from tvm_intsmooth.schedule.intrinsics.tensorize import tensorize_blocked_conv

compat.fast_tvmscript_stack()  # before parsing ~100 TVMScript functions, often deep in an import
x86.register()
arm.register()

__all__ = [
    "BLOCK_LANES",
    "KernelIntrin",
    "high_intrin_for",
    "tensor_intrin_for",
    "tensorize_blocked_conv",
]
