"""The Intel AMX conv kernels (schedule/intrinsics/amx.py, tensorize_amx.py) compute the blocked
int8 convolution exactly: against the numpy integer reference where the CPU has AMX and Linux
grants it (skipped elsewhere, with the reason), and as AMX tile instructions in the assembly of
a cross-compiled build everywhere."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import numpy as np
import pytest
import tvm
from tvm import te

sys.path.insert(0, str(Path(__file__).parent))

from intrinsics_conv import pack_data, pack_kernel, unpack_output  # noqa: E402

from tvm_intsmooth.reference.numpy_ops import conv2d  # noqa: E402
from tvm_intsmooth.schedule.blocked_kernels import conv_blocked  # noqa: E402
from tvm_intsmooth.schedule.intrinsics import amx  # noqa: E402
from tvm_intsmooth.schedule.targets import host_can_run, resolve_target  # noqa: E402
from tvm_intsmooth.transform.schedule_blocked_kernels import schedule_blocked_conv  # noqa: E402

# (input channels, output channels, input size, kernel, stride, padding): the ResNet-20's
# convolutions (16/32/64 channels, the stride-2 transitions, the unpadded form), and a width
# whose tile is not 16 rows (28 -> 14).
CASES = [(16, 16, 32, 3, 1, 1), (32, 32, 16, 3, 1, 1), (64, 64, 8, 3, 1, 1),
         (16, 32, 32, 3, 2, 1), (32, 16, 10, 3, 1, 0), (16, 16, 28, 3, 1, 1)]  # fmt: skip


def conv_func(c: int, k: int, size: int, kernel: int, stride: int, pad: int, batch: int = 3):
    data = te.placeholder((batch, c // 16, size, size, 16), "uint8", name="data")
    weight = te.placeholder((k // 16, c // 16, kernel, kernel, 4, 16, 4), "int8", name="w")
    out = conv_blocked(data, weight, (stride, stride), (pad,) * 4, (1, 1), 255)
    return te.create_prim_func([data, weight, out])


def amx_build(func):
    target = resolve_target("x86-amx").target
    scheduled = schedule_blocked_conv(func, target)
    return tvm.compile(tvm.IRModule({"main": scheduled}), target=target)


def test_tile_config_is_intels_layout():
    """ldtilecfg's 64 bytes: palette 1 at byte 0, each tile's bytes per row as a little-endian
    uint16 from byte 16, its rows from byte 48; accumulators, data, weights."""
    config = amx.tile_config(14, 3)
    assert config[0] == 1 and not config[1:16].any()
    assert config[16:22].view("<u2").tolist() == [64, 48, 64] and not config[22:48].any()
    assert config[48:51].tolist() == [14, 14, 12] and not config[51:].any()


@pytest.mark.parametrize(
    "width, kernel_w, expected",
    [(32, 3, True), (8, 3, True), (7, 3, False), (32, 1, False), (32, 5, False)],
)
def test_fits_only_where_a_tile_pays(width, kernel_w, expected):
    assert amx.fits(width, kernel_w, 4, 16) is expected


@pytest.mark.parametrize("case", CASES, ids=lambda c: "c{}-k{}-{}px-k{}-s{}-p{}".format(*c))
def test_amx_conv_equals_numpy(case):
    if not host_can_run("x86-amx"):
        pytest.skip("this CPU has no AMX int8 tiles, or Linux does not grant them")
    c, k, size, kernel, stride, pad = case
    rng = np.random.default_rng(sum(case))
    x = rng.integers(0, 256, (3, c, size, size), dtype=np.int64)
    w = rng.integers(-128, 128, (k, c, kernel, kernel), dtype=np.int64)
    lib = amx_build(conv_func(c, k, size, kernel, stride, pad))
    expected = conv2d(x, w, strides=(stride, stride), padding=(pad,) * 4)
    dev = tvm.cpu()
    out = tvm.runtime.empty((3, k // 16, *expected.shape[2:], 16), "int32", dev)
    data = tvm.runtime.tensor(pack_data(x).astype("uint8"), dev)
    weight = tvm.runtime.tensor(pack_kernel(w, 4).astype("int8"), dev)
    lib["main"](data, weight, out)
    np.testing.assert_array_equal(unpack_output(out.numpy()), expected)


def test_amx_build_issues_tile_instructions():
    """Cross-compiled for x86-amx (any machine): the conv is tdpbusd on tiles, the tile
    configuration is loaded, and no vpdpbusd is left."""
    lib = amx_build(conv_func(16, 16, 32, 3, 1, 1))
    asm = lib.mod.inspect_source("asm")
    assert "tdpbusd" in asm and "ldtilecfg" in asm and "tileloadd" in asm
    assert "vpdpbusd" not in asm


def test_refused_tile_state_stops_with_a_clear_message(monkeypatch):
    """Where Linux refuses the tile state, the kernel stops at its permission check, before any
    tile instruction, with an error that says what to do (a refusal is simulated by asking for
    a state component that does not exist)."""
    if platform.system() != "Linux" or not host_can_run("x86-vnni"):
        pytest.skip("needs Linux on an AVX-512 x86-64 CPU to run an x86-amx build's prologue")
    monkeypatch.setattr(amx, "XFEATURE_XTILEDATA", 99)
    lib = amx_build(conv_func(16, 16, 32, 3, 1, 1, batch=2))
    dev = tvm.cpu()
    args = [np.zeros((2, 1, 32, 32, 16), "uint8"), np.zeros((1, 1, 3, 3, 4, 16, 4), "int8"),
            np.zeros((2, 1, 32, 32, 16), "int32")]  # fmt: skip
    with pytest.raises(Exception, match="rebuild for the target x86-vnni"):
        lib["main"](*(tvm.runtime.tensor(a, dev) for a in args))
