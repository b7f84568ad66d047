"""A small blocked int8 conv (topi.nn.conv2d_NCHWc_int8), its packing and its numpy reference,
shared by the intrinsics tests."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import te, topi

from tvm_intsmooth.reference.numpy_ops import conv2d
from tvm_intsmooth.schedule.intrinsics import KernelIntrin, tensorize_blocked_conv
from tvm_intsmooth.schedule.targets import host_features


def blocked_conv(
    intrin: KernelIntrin, n=2, c=16, k=16, hw=8, tensorize_with=None, epilogue=False
) -> tvm.IRModule:
    """3x3, stride 1, pad 1 conv in the blocked layout for ``intrin``'s operands, scheduled with
    ``tensorize_with`` (default: ``intrin``). ``epilogue``: the result is ``conv - 1``, computed
    under the output row loop as the layout's fused kernels do (before tensorizing)."""
    r = intrin.reduce
    data = te.placeholder((n, c // 16, hw, hw, 16), intrin.data_dtype, name="data")
    kernel = te.placeholder((k // 16, c // 16, 3, 3, 16 // r, 16, r), "int8", name="kernel")
    out = topi.nn.conv2d_NCHWc_int8(data, kernel, 1, 1, 1, "NCHW16c", "NCHW16c", "int32", r)
    if epilogue:
        out = te.compute(out.shape, lambda *i: out(*i) - 1, name="epilogue")
    sch = tvm.s_tir.Schedule(te.create_prim_func([data, kernel, out]))
    if epilogue:
        row = sch.get_loops(sch.get_sblock("conv2d_NCHWc_int8"))[2]
        sch.reverse_compute_at(sch.get_sblock("epilogue"), row)
    tensorize_blocked_conv(sch, "conv2d_NCHWc_int8", tensorize_with or intrin)
    return sch.mod


def pack_data(x: np.ndarray) -> np.ndarray:
    """NCHW -> [N, C/16, H, W, 16]."""
    n, c, h, w = x.shape
    return np.ascontiguousarray(x.reshape(n, c // 16, 16, h, w).transpose(0, 1, 3, 4, 2))


def pack_kernel(w: np.ndarray, r: int) -> np.ndarray:
    """OIHW -> [K/16, C/16, KH, KW, 16/r, 16, r]."""
    k, c, kh, kw = w.shape
    blocks = w.reshape(k // 16, 16, c // 16, 16 // r, r, kh, kw)
    return np.ascontiguousarray(blocks.transpose(0, 2, 5, 6, 3, 1, 4))


def unpack_output(y: np.ndarray) -> np.ndarray:
    """[N, K/16, H, W, 16] -> NCHW."""
    n, kc, h, w, b = y.shape
    return y.transpose(0, 1, 4, 2, 3).reshape(n, kc * b, h, w)


def run_blocked_conv(lib, intrin: KernelIntrin, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Run the compiled conv on NCHW ``x`` and OIHW ``w``; the NCHW int32 result."""
    dev = tvm.cpu()
    n, _, h, wd = x.shape
    out = tvm.runtime.empty((n, w.shape[0] // 16, h, wd, 16), "int32", dev)
    args = (pack_data(x).astype(intrin.data_dtype), pack_kernel(w, intrin.reduce).astype("int8"))
    lib(*(tvm.runtime.tensor(a, dev) for a in args), out)
    return unpack_output(out.numpy())


def reference(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The exact integer conv (numpy interpreter's conv2d), int64."""
    return conv2d(x.astype(np.int64), w.astype(np.int64), padding=(1, 1, 1, 1))


def host_has(feature: str) -> bool:
    """Whether this machine's CPU has ``feature`` (LLVM name: avx512vnni, avx2, dotprod...)."""
    return feature in host_features()[1]
