"""Intel AMX (the tile matrix unit of Sapphire Rapids and later Xeons) for the blocked int8 conv.

``tdpbusd`` multiplies a ``rows x K`` uint8 tile by a ``K x 16`` int8 tile into ``rows x 16``
int32 accumulators, each a sum of 4-byte dot products as ``vpdpbusd`` computes them (no
saturation, no rounding): exact for every operand, with the int32 bound that the blocked layout
already checks. One call of the intrinsic here computes a tile of ``rows`` output pixels of one
row x 16 output channels over the conv's whole reduction, keeping the accumulators in a tile
register: for each kernel row and 16-channel input block, one ``tdpbusd`` whose ``K`` is the
``KW`` taps x 16 channels of that row (48 bytes for 3 x 3), read straight from the blocked
layout, which holds those bytes side by side for every output pixel:

- data ``[B, C/16, H, W, 16]``: output pixel ``m`` reads pixels ``m * S .. m * S + KW - 1`` of
  the input row, ``16 * KW`` consecutive bytes, ``16 * S`` bytes after pixel ``m - 1``'s: a tile
  row each, loaded with stride ``16 * S`` (rows overlap for 3 x 3, which ``tileloadd`` allows);
- weights ``[K/16, C/16, KH, KW, 4, 16, 4]``: for one kernel row and input block, ``KW * 4`` rows
  of 64 bytes (16 output channels x 4 input channels), the VNNI layout ``tdpbusd`` reads;
- accumulators: ``rows x 16`` int32, the output tile of the blocked layout.

A tile's shape is fixed by a configuration (``ldtilecfg``) that each thread loads;
:func:`config_block` loads the one a kernel needs at the start of each iteration of its parallel
loop, after asking Linux for the tile state (``arch_prctl(ARCH_REQ_XCOMP_PERM)``: a process must,
once, before its first tile instruction; the request is idempotent and costs about 70 ns).
"""

from __future__ import annotations

import ctypes
import functools
import platform

import numpy as np
import tvm
from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T

from tvm_intsmooth.compat import SCRATCH_SCOPE

AMX_CONV = "intsmooth_amx_conv"
TILE_BYTES = 64  # bytes per tile row
LANES = 16  # output channels per tile (int32 columns)
GROUP = 4  # bytes per dot product (input channels per group of the packed weights)
MAX_ROWS = 16
# The tiles of a conv kernel: accumulators, data, weights.
ACC, DATA, WEIGHT = 0, 1, 2
CONFIG_BLOCK = "amx_tile_config"  # the name of config_block's block

SYS_ARCH_PRCTL = 158  # x86-64
ARCH_REQ_XCOMP_PERM = 0x1023
XFEATURE_XTILEDATA = 18
PERMISSION_MESSAGE = (
    "this library uses Intel AMX, which Linux did not grant this process (arch_prctl "
    "ARCH_REQ_XCOMP_PERM failed): rebuild for the target x86-vnni"
)


@functools.cache
def granted() -> bool:
    """Whether this process may use AMX tiles (Linux on x86-64 grants them on request)."""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    request = (SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)
    return libc.syscall(*(ctypes.c_long(v) for v in request)) == 0


def target_has_amx(target: tvm.target.Target) -> bool:
    """Whether ``target`` (an LLVM x86 target) lets LLVM emit AMX int8 tile instructions."""
    has = tvm.target.codegen.target_has_features
    return target.kind.name == "llvm" and bool(has("amx-int8", target) and has("amx-tile", target))


def fits(width: int, kernel_w: int, inner: int, lanes: int) -> bool:
    """Whether a blocked conv of output ``width``, ``kernel_w`` taps per row, ``inner`` bytes
    per dot product and ``lanes`` output channels per block has an AMX tile that pays: a kernel
    row's taps fill half a tile row or more and fit in one, and a row has at least 8 output
    pixels. A 1 x 1 conv (16 of the 64 bytes) or a narrower row ran slower than the vector
    kernel (Xeon, 2 cores: 1 x 1 stride 2, 16 -> 32 channels, 1.16 against 0.79 us per sample;
    3 x 3 at 7 x 7, 0.65 against 0.59)."""
    taps = kernel_w * LANES
    return inner == GROUP and lanes == LANES and 2 * taps >= TILE_BYTES >= taps and width >= 8


def tile_rows(width: int) -> int:
    """Output pixels per tile: the largest divisor of ``width`` up to 16."""
    return max(d for d in range(1, min(MAX_ROWS, width) + 1) if width % d == 0)


def _call(name: str, *args):
    return T.call_llvm_intrin("void", T.llvm_lookup_intrinsic_id(name), *args)


def _desc(rows: int, kh: int, kw: int, cb: int, stride: int, a_scope: str, c_scope: str):
    """The computation (the topi conv's loops ``ow, oc_block, kh, kw, ic_outer, ic_group,
    ic_inner``), as TVMScript text: loops of extent 1 stay loops but have no block iterator,
    as in the scheduled conv that tensorize compares it with."""
    span = (rows - 1) * stride + kw
    axes = [("vm", "S", rows, "m"), ("vl", "S", LANES, "l"), ("vy", "R", kh, "ry"),
            ("vx", "R", kw, "rx"), ("vc", "R", cb, "rc"), ("vg", "R", 4, "rg"),
            ("vi", "R", GROUP, "ri")]  # fmt: skip
    kinds = {"S": "spatial", "R": "reduce"}
    binds = [f"{v} = T.axis.{kinds[k]}({n}, {loop})" for v, k, n, loop in axes if n > 1]
    at = {v: (v if n > 1 else "0") for v, _, n, _ in axes}  # a unit axis: index 0
    vm, vl, vy, vx, vc, vg, vi = at.values()
    indent = "\n" + " " * 16
    return f"""
@T.prim_func(s_tir=True)
def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
    A = T.match_buffer(a, ({cb}, {kh}, {span}, 16), "uint8", offset_factor=1, scope="{a_scope}")
    B = T.match_buffer(b, ({cb}, {kh}, {kw}, 4, 16, 4), "int8", offset_factor=1)
    C = T.match_buffer(c, ({rows}, 16), "int32", offset_factor=1, scope="{c_scope}")
    with T.sblock("root"):
        T.reads(C[0:{rows}, 0:16], A[0:{cb}, 0:{kh}, 0:{span}, 0:16],
                B[0:{cb}, 0:{kh}, 0:{kw}, 0:4, 0:16, 0:4])
        T.writes(C[0:{rows}, 0:16])
        for m, l, ry, rx, rc, rg, ri in T.grid({rows}, 16, {kh}, {kw}, {cb}, 4, 4):
            with T.sblock("update"):
                {indent.join(binds)}
                C[{vm}, {vl}] = C[{vm}, {vl}] + T.Cast(
                    "int32", A[{vc}, {vy}, {vm} * {stride} + {vx}, {vg} * 4 + {vi}]
                ) * T.Cast("int32", B[{vc}, {vy}, {vx}, {vg}, {vl}, {vi}])
"""


def _impl(rows: int, kh: int, kw: int, cb: int, stride: int, a_scope: str, c_scope: str):
    span = (rows - 1) * stride + kw
    row_bytes = LANES * stride
    weight_rows = kw * GROUP * TILE_BYTES  # bytes of one kernel row's weights (4 kw tile rows)

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (cb, kh, span, 16), "uint8", offset_factor=1, scope=a_scope,
                           strides=[T.int32(), T.int32(), 16, 1])  # fmt: skip
        B = T.match_buffer(b, (cb, kh, kw, 4, 16, 4), "int8", offset_factor=1,
                           strides=[T.int32(), weight_rows, 256, 64, 4, 1])  # fmt: skip
        C = T.match_buffer(c, (rows, 16), "int32", offset_factor=1, scope=c_scope,
                           strides=[16, 1])  # fmt: skip
        with T.sblock("root"):
            T.reads(C[0:rows, 0:16], A[0:cb, 0:kh, 0:span, 0:16],
                    B[0:cb, 0:kh, 0:kw, 0:4, 0:16, 0:4])  # fmt: skip
            T.writes(C[0:rows, 0:16])
            # Pointers as address_of(element), not access_ptr: once FuseSampleLoops has put
            # several kernels in one function, TVM merges their stack buffers of different
            # dtypes into one allocation, and a typed access_ptr then fails to lower.
            accumulators = T.address_of(C[0, 0])
            T.evaluate(_call("llvm.x86.tileloadd64", T.int8(ACC), accumulators, T.int64(64)))
            for y, block in T.grid(kh, cb):
                data = T.address_of(A[block, y, 0, 0])
                weights = T.address_of(B[block, y, 0, 0, 0, 0])
                T.evaluate(_call("llvm.x86.tileloadd64", T.int8(DATA), data, T.int64(row_bytes)))
                T.evaluate(_call("llvm.x86.tileloadd64", T.int8(WEIGHT), weights, T.int64(64)))
                T.evaluate(_call("llvm.x86.tdpbusd", T.int8(ACC), T.int8(DATA), T.int8(WEIGHT)))
            T.evaluate(_call("llvm.x86.tilestored64", T.int8(ACC), accumulators, T.int64(64)))

    return impl


def conv_tile_intrin(
    rows: int, kh: int, kw: int, cb: int, stride: int, a_scope: str = "global", c_scope="global"
) -> str:
    """Register (once) and name the intrinsic of one conv tile: ``rows`` output pixels x 16
    output channels over the reduction of a ``kh x kw`` kernel on ``cb`` input blocks, stride
    ``stride``; data in ``a_scope``, accumulators in ``c_scope``."""
    name = f"{AMX_CONV}_{rows}x16_k{kh}x{kw}_c{cb}_s{stride}_{a_scope}_{c_scope}"
    if TensorIntrin.get(name, allow_missing=True) is None:
        desc = tvm.script.from_source(_desc(rows, kh, kw, cb, stride, a_scope, c_scope))
        TensorIntrin.register(name, desc, _impl(rows, kh, kw, cb, stride, a_scope, c_scope))
    return name


def tile_config(rows: int, kw: int) -> np.ndarray:
    """The 64-byte ``ldtilecfg`` operand for a conv tile of ``rows`` pixels and ``kw`` taps:
    palette 1; the accumulators ``rows x 64`` bytes, the data ``rows x 16 kw``, the weights
    ``4 kw x 64``."""
    config = np.zeros(64, np.uint8)
    config[0] = 1
    for tile, (tile_rows_, row_bytes) in enumerate(
        [(rows, TILE_BYTES), (rows, LANES * kw), (GROUP * kw, TILE_BYTES)]
    ):
        config[16 + 2 * tile : 18 + 2 * tile] = np.array([row_bytes], "<u2").view(np.uint8)
        config[48 + tile] = tile_rows_
    return config


def config_block(rows: int, kw: int) -> tvm.tirx.Stmt:
    """An opaque block that asks Linux for the tile state (an assertion fails where it is
    refused) and loads the tile configuration of :func:`tile_config`."""
    w = [int(v) for v in tile_config(rows, kw).view("<i4")]
    number, request, feature = SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA

    @T.prim_func(s_tir=True)
    def setup():
        with T.sblock(CONFIG_BLOCK):
            T.reads()
            T.writes()
            status = T.call_extern(
                "int64", "syscall", T.int64(number), T.int64(request), T.int64(feature)
            )
            assert status == T.int64(0), PERMISSION_MESSAGE
            # int32 words: the stack buffers TVM merges into one allocation are typed alike
            config = T.alloc_buffer((16,), "int32", scope=SCRATCH_SCOPE)
            config[0] = T.int32(w[0])
            config[1] = T.int32(w[1])
            config[2] = T.int32(w[2])
            config[3] = T.int32(w[3])
            config[4] = T.int32(w[4])
            config[5] = T.int32(w[5])
            config[6] = T.int32(w[6])
            config[7] = T.int32(w[7])
            config[8] = T.int32(w[8])
            config[9] = T.int32(w[9])
            config[10] = T.int32(w[10])
            config[11] = T.int32(w[11])
            config[12] = T.int32(w[12])
            config[13] = T.int32(w[13])
            config[14] = T.int32(w[14])
            config[15] = T.int32(w[15])
            T.evaluate(_call("llvm.x86.ldtilecfg", T.address_of(config[0])))

    return setup.body
