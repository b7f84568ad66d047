"""Which tensor intrinsic a target's int8 (or int16 first-layer) kernels use: tensor_intrin_for."""

from __future__ import annotations

from dataclasses import dataclass

import tvm
from tvm.target import codegen

from tvm_intsmooth.schedule.intrinsics import arm, x86

__all__ = ["KernelIntrin", "tensor_intrin_for", "high_intrin_for", "BLOCK_LANES"]

BLOCK_LANES = 16  # output channels per block of the blocked layout, on every target


@dataclass(frozen=True)
class KernelIntrin:
    """One registered tensor intrinsic and the facts a layout or a tuner needs about it.

    Each call computes ``C[i] += sum_k int32(A[k]) * int32(B[i, k])`` for ``i < lanes``,
    ``k < reduce``: ``A`` is ``reduce`` consecutive input channels of one pixel (``data_dtype``),
    ``B`` a row-major ``lanes x reduce`` block of weights (``weight_dtype``), ``C`` int32.

    Attributes:
        name: the name it is registered under (``tvm.s_tir.TensorIntrin.get(name)``).
        isa: the instruction set it needs (``avx512vnni``, ``avx512bw``, ``avx2``, ``dotprod``,
            ``neon``).
        lanes: int32 output lanes per call (16 on x86, 4 on ARM).
        reduce: products summed per lane per call: the ``n_elems`` of
            ``topi.nn.conv2d_NCHWc_int8`` (4 for 8-bit data, 2 for int16 data).
        data_dtype: dtype of the data operand (what the conv's data buffer must hold).
        weight_dtype: dtype of the weights (``int8`` everywhere).
        asm: the mnemonic that the target's assembly contains where the intrinsic was used.
        max_data: largest data value for which the result is exact (None: every value of
            ``data_dtype``); 127 for the AVX2 ``vpmaddubsw`` intrinsic and the ARM ones with
            uint8 data (the byte is read as int8). The caller guarantees it: a conv input that
            can exceed it (a +128-shifted one) must use another kernel.
        accumulators: 16-lane output blocks a register tile holds with room left for its
            weights, broadcasts and temporaries: 16 with AVX-512 (32 zmm, one each), 4 with AVX2
            (16 ymm, two each, and the vpmaddubsw/vpmaddwd temporaries: 6 was 3% slower and 16,
            spilling, 25%), 4 on ARM (32 q registers, four each; the smull form needs more
            temporaries: 3).
    """

    name: str
    isa: str
    lanes: int
    reduce: int
    data_dtype: str
    weight_dtype: str
    asm: str
    max_data: int | None = None
    accumulators: int = 16

    @property
    def block_lanes(self) -> int:
        """Output channels per block of the layout (16); one block is ``16 / lanes`` calls."""
        return BLOCK_LANES


VNNI = KernelIntrin(x86.VNNI_U8S8, "avx512vnni", 16, 4, "uint8", "int8", "vpdpbusd")
AVX2 = KernelIntrin(
    x86.AVX2_U8S8, "avx2", 16, 4, "uint8", "int8", "vpmaddubsw", x86.AVX2_MAX_UNSIGNED, 4
)
AVX512_INT16 = KernelIntrin(x86.AVX512_S16S8, "avx512bw", 16, 2, "int16", "int8", "vpmaddwd")
# With VNNI, LLVM may fuse the intrinsic's vpmaddwd + vpaddd into one vpdpwssd (not when it
# tunes for Cascade Lake, where vpdpwssd is the slower choice).
VNNI_INT16 = KernelIntrin(x86.AVX512_S16S8, "avx512vnni", 16, 2, "int16", "int8", "vpdpwssd")
AVX2_INT16 = KernelIntrin(x86.AVX2_S16S8, "avx2", 16, 2, "int16", "int8", "vpmaddwd", None, 4)
SDOT = KernelIntrin(arm.SDOT_S8S8, "dotprod", 4, 4, "int8", "int8", "sdot", None, 4)
NEON = KernelIntrin(arm.NEON_S8S8, "neon", 4, 4, "int8", "int8", "smull", None, 3)
SDOT_U8 = KernelIntrin(arm.SDOT_U8S8, "dotprod", 4, 4, "uint8", "int8", "sdot", arm.MAX_UNSIGNED, 4)
NEON_U8 = KernelIntrin(arm.NEON_U8S8, "neon", 4, 4, "uint8", "int8", "smull", arm.MAX_UNSIGNED, 3)


def tensor_intrin_for(target, data_dtype: str = "uint8") -> KernelIntrin | None:
    """The tensor intrinsic for ``target``'s blocked int8 kernels, or None where it has none.

    The blocked layout is the same on every target (``topi.nn.conv2d_NCHWc_int8``): data
    ``[B, C/16, H, W, 16]`` and weights ``[K/16, C/16, KH, KW, 16/R, 16, R]`` with ``R =
    intrin.reduce`` (4 for 8-bit data), so one packed kernel serves x86 (one 16-lane call per
    block, ``lanes=16``) and ARM (four 4-lane calls, ``lanes=4``).

    Choice, best first: 8-bit data: VNNI ``vpdpbusd`` (``avx512vnni``), then AVX2
    ``vpmaddubsw + vpmaddwd`` (exact only for data <= 127: see ``max_data``), ARM ``sdot``
    (``dotprod``), then NEON ``smull`` (uint8 data: the bytes read as int8, exact for data <=
    127; int8 data: TVM's own intrinsics, exact for all). int16 data (the first layer's noisy
    pixels; weights int8; ``reduce=2``; the same data block of 16 channels, zero-padded), the
    pair sum ``vpmaddwd`` on AVX-512BW (LLVM fuses it into ``vpdpwssd`` with VNNI) or AVX2;
    None on ARM and generic x86-64, where a plain vectorized int32 kernel is the exact fallback.

    Operand rules (exactness): data must be <= ``max_data`` where that is set (AVX2 and ARM with
    uint8 data: 127, i.e. post-ReLU activations; a +128-shifted 0..255 input needs the int16
    path or, on x86, VNNI). x86 has no int8-data intrinsic (``data_dtype="int8"`` gets None).

    Args:
        target: anything :func:`tvm_intsmooth.schedule.resolve_target` accepts (``"x86-vnni"``,
            ``"rpi5"``, ``"host"``, a TargetSpec, a ``tvm.target.Target``...).
        data_dtype: ``"uint8"`` or ``"int8"`` for 8-bit activations, ``"int16"`` for the first
            layer.

    Returns:
        A :class:`KernelIntrin` (registered on import of this package), or None.
    """
    from tvm_intsmooth.errors import IntSmoothError
    from tvm_intsmooth.schedule.targets import resolve_target

    if data_dtype not in ("uint8", "int8", "int16"):
        raise IntSmoothError(
            f"tensor_intrin_for: data dtype {data_dtype!r} has no intrinsic; use uint8/int8 "
            "(activations) or int16 (the first layer's noisy pixels)."
        )
    tvm_target = target if isinstance(target, tvm.target.Target) else resolve_target(target).target
    if tvm_target.kind.name != "llvm":
        return None
    triple = str(tvm_target.attrs.get("mtriple", "") or codegen.llvm_get_system_triple())

    def has(feature: str) -> bool:
        return bool(codegen.target_has_features(feature, tvm_target))

    if triple.startswith(("aarch64", "arm64")):
        if data_dtype == "int16":
            return None
        if data_dtype == "uint8":
            return SDOT_U8 if has("dotprod") else NEON_U8 if has("neon") else None
        return SDOT if has("dotprod") else NEON if has("neon") else None
    if not triple.startswith(("x86_64", "i686", "i386")):
        return None
    if data_dtype == "int8":
        return None
    if data_dtype == "int16":
        if has("avx512bw"):
            return VNNI_INT16 if has("avx512vnni") else AVX512_INT16
        return AVX2_INT16 if has("avx2") else None
    return VNNI if has("avx512vnni") else AVX2 if has("avx2") else None


def high_intrin_for(target) -> str | None:
    """The base name of the target's intrinsic for the high product of the int32
    requantization (``requantize_high`` blocks; :func:`x86.high_name` gives a variant), or None
    where LLVM's own lowering is used (ARM: smull/smull2; x86 without AVX2)."""
    from tvm_intsmooth.schedule.targets import resolve_target

    tvm_target = target if isinstance(target, tvm.target.Target) else resolve_target(target).target
    if tvm_target.kind.name != "llvm":
        return None
    triple = str(tvm_target.attrs.get("mtriple", "") or codegen.llvm_get_system_triple())
    if not triple.startswith(("x86_64", "i686", "i386")):
        return None
    if codegen.target_has_features("avx512f", tvm_target):
        return x86.HIGH_AVX512
    return x86.HIGH_AVX2 if codegen.target_has_features("avx2", tvm_target) else None
