"""ARM tensor intrinsics: TVM's own arm_cpu ones, which build in TVM 0.27 when cross-compiling.

- ``dot_4x4_i8i8s32_sdot`` (Armv8.2 dot product, ``+dotprod``: Raspberry Pi 5's Cortex-A76): one
  ``sdot`` computes 4 int32 lanes, each the sum of 4 int8 x int8 products. Exact.
- ``dot_4x4_i8i8s32_neon`` (plain NEON: Raspberry Pi 4's Cortex-A72): ``smull`` (int8 x int8 ->
  int16 products, exact: |product| <= 2^14), ``saddlp`` (pairs -> int32) and ``addp``. Exact.

Both take signed bytes: a post-ReLU activation (0..127) is the same byte in int8 and uint8, so the
blocked layout's data feeds them as it is (reinterpreted as int8). The 16 output lanes of the
blocked layout are 4 calls (weights ``[.., 16, 4]`` split into four contiguous 4 x 4 blocks).
Loading the module registers them.
"""

from __future__ import annotations

from .stock import load_stock

_arm_cpu = load_stock("dot_product_common") and load_stock("arm_cpu")

SDOT_S8S8 = _arm_cpu.ARM_DOT_4x4_i8_SDOT_INTRIN
NEON_S8S8 = _arm_cpu.ARM_DOT_4x4_i8_NEON_INTRIN
