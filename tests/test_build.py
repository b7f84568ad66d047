"""Building an integer Relax module, running it exactly, exporting it for host and aarch64."""

import platform
import shutil

import numpy as np
import pytest
import tvm
from tvm import relax

from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.pipeline.build import build, export, load
from tvm_intsmooth.schedule import resolve_target

MULTIPLIER, SHIFT = 1518500250, 36  # about 0.0221: fixed-point requantization
ELF_MACHINE = {"x86_64": 62, "aarch64": 183}
HAS_CROSS_GCC = shutil.which("aarch64-linux-gnu-gcc") is not None


def requant_module() -> tvm.IRModule:
    """int8 conv2d (int32 accumulators), int64 multiply and arithmetic right shift, clip."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((2, 3, 6, 6), "int8"))
    w = relax.Var("w", relax.TensorType((4, 3, 3, 3), "int8"))
    with bb.function("main", [x, w]):
        with bb.dataflow():
            acc = bb.emit(relax.op.nn.conv2d(x, w, padding=1, out_dtype="int32"))
            wide = bb.emit(relax.op.astype(acc, "int64"))
            scaled = bb.emit(relax.op.multiply(wide, relax.const(MULTIPLIER, "int64")))
            shifted = bb.emit(relax.op.right_shift(scaled, relax.const(SHIFT, "int64")))
            clipped = bb.emit(relax.op.clip(shifted, -128, 127))
            out = bb.emit_output(relax.Tuple([relax.op.astype(clipped, "int8"), acc]))
        bb.emit_func_output(out)
    return bb.get()


def numpy_reference(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    padded = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    acc = np.zeros((x.shape[0], w.shape[0], 6, 6), np.int64)
    for dy in range(3):
        for dx in range(3):
            window = padded[:, :, dy : dy + 6, dx : dx + 6]
            acc += np.einsum("bchw,oc->bohw", window, w[:, :, dy, dx].astype(np.int64))
    out = np.clip((acc * MULTIPLIER) >> SHIFT, -128, 127).astype(np.int8)
    return out, acc.astype(np.int32)


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(7)
    x = rng.integers(-128, 128, (2, 3, 6, 6)).astype(np.int8)
    w = rng.integers(-128, 128, (4, 3, 3, 3)).astype(np.int8)
    return x, w


@pytest.fixture(scope="module")
def host_executable():
    return build(requant_module(), "host", require_integer_only=True)


def run(vm: relax.VirtualMachine, x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out, acc = vm["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(w))
    return out.numpy(), acc.numpy()


def test_host_build_is_exact(host_executable, inputs):
    x, w = inputs
    out, acc = run(relax.VirtualMachine(host_executable, tvm.cpu()), x, w)
    ref_out, ref_acc = numpy_reference(x, w)
    np.testing.assert_array_equal(acc, ref_acc)
    np.testing.assert_array_equal(out, ref_out)
    # The test data exercises negative shifts, clipping at both ends and large accumulators.
    assert (out == 127).any() and (out == -128).any() and (np.abs(out) < 100).any()
    assert np.abs(ref_acc).max() > 2**16


def test_export_and_load_round_trip(host_executable, inputs, tmp_path):
    path = export(host_executable, tmp_path / "lib" / "model.so", "host")
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF"
    machine = platform.machine()
    if machine in ELF_MACHINE:
        assert int.from_bytes(header[18:20], "little") == ELF_MACHINE[machine]
    x, w = inputs
    for got, ref in zip(run(load(path), x, w), numpy_reference(x, w), strict=True):
        np.testing.assert_array_equal(got, ref)


def test_num_threads_sets_num_cores(monkeypatch):
    seen = []
    real_compile = tvm.compile

    def spy(mod, target=None, **kwargs):
        seen.append(target)
        return real_compile(mod, target=target, **kwargs)

    monkeypatch.setattr(tvm, "compile", spy)
    build(requant_module(), "host", num_threads=1)
    build(requant_module(), "rpi5", num_threads=3)
    assert seen[0].attrs["num-cores"] == 1
    assert seen[0].attrs["mcpu"] == resolve_target("host").target.attrs["mcpu"]
    assert seen[1].attrs["num-cores"] == 3 and seen[1].attrs["feature.has_dotprod"]
    with pytest.raises(IntSmoothError, match="num_threads"):
        build(requant_module(), "host", num_threads=0)


def test_require_integer_only_rejects_float():
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((4,), "int8"))
    with bb.function("main", [x]):
        half = bb.emit(relax.op.astype(x, "float16"))
        bb.emit_func_output(bb.emit(relax.op.astype(half, "int8")))
    with pytest.raises(IntSmoothError, match="float16"):
        build(bb.get(), "host", require_integer_only=True)


@pytest.mark.skipif(not HAS_CROSS_GCC, reason="needs aarch64-linux-gnu-gcc (gcc-aarch64-linux-gnu)")
def test_cross_export_rpi4_is_aarch64_elf(tmp_path):
    path = export(build(requant_module(), "rpi4"), tmp_path / "rpi4.so", "rpi4")
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and header[4] == 2  # 64-bit
    assert int.from_bytes(header[18:20], "little") == 183  # EM_AARCH64
    if platform.machine() != "aarch64":
        with pytest.raises(IntSmoothError, match="another architecture"):
            load(path)


def test_export_errors(host_executable, tmp_path, monkeypatch):
    if platform.machine() == "x86_64":
        no_cross = {"target": {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "num-cores": 4}}
        with pytest.raises(IntSmoothError, match="cross_compiler"):
            export(host_executable, tmp_path / "a.so", no_cross)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(IntSmoothError, match="gcc-aarch64-linux-gnu"):
        export(host_executable, tmp_path / "b.so", "rpi4")
    with pytest.raises(IntSmoothError, match="does not exist"):
        load(tmp_path / "missing.so")
