"""ConvertToBlockedInt8: golden-IR tests of the rewrite, fusion of the epilogues, and bit-exact
logits of the blocked build against the numpy integer interpreter and the plain NCHW build.

The Expected modules pack their weights and constants with explicit numpy loops written here,
independently of ``blocked_kernels``' reshapes; the kernels themselves are the pass's TE
functions (the rewrite is what these tests pin down, the kernels' arithmetic is what the
end-to-end tests check).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import tvm
from conftest import random_images
from onnx_models import TEST_MODELS, pooling_model, signed_input_model
from tvm import relax, tirx
from tvm.relax import op as R
from tvm.relax.backend.cpu_generic import pipeline as cpu

from tvm_intsmooth.assets import ASSETS
from tvm_intsmooth.data import load_npz
from tvm_intsmooth.errors import UnsupportedModelError
from tvm_intsmooth.importer import import_onnx
from tvm_intsmooth.pipeline.build import build
from tvm_intsmooth.pipeline.phases import cpu_pipeline
from tvm_intsmooth.pipeline.quantize import quantize_static
from tvm_intsmooth.reference import interpret
from tvm_intsmooth.schedule import blocked_kernels as K
from tvm_intsmooth.schedule.targets import resolve_target
from tvm_intsmooth.transform.convert_to_blocked_int8 import ConvertToBlockedInt8

MODELS = {**TEST_MODELS, "signed_input": signed_input_model, "pooling": pooling_model}
MANIFEST = json.loads((ASSETS / "models" / "manifest.json").read_text())["models"]
DATA = {(1, 28, 28): "fashion_mnist_test500.npz", (3, 32, 32): "fashion_mnist32_test500.npz"}


def _packed_conv(w: np.ndarray) -> np.ndarray:
    """[K/16, C/16, KH, KW, 4, 16, 4] by the definition of conv2d_NCHWc_int8's indices."""
    k, c, kh, kw = w.shape
    kb, cb = -(-k // 16), -(-c // 16)
    out = np.zeros((kb, cb, kh, kw, 4, 16, 4), np.int8)
    for o in range(k):
        for i in range(c):
            out[o // 16, i // 16, :, :, (i % 16) // 4, o % 16, i % 4] = w[o, i]
    return out


def _packed_rows(w: np.ndarray) -> np.ndarray:
    """The first conv's [K/16, 1, KH, 1, P, 16, 2]: tap (kw, c) of a kernel row is row value
    kw * C + c = 2 p + i, P = ceil(KW * C / 2)."""
    k, c, kh, kw = w.shape
    pairs = -(-kw * c // 2)
    out = np.zeros((-(-k // 16), 1, kh, 1, pairs, 16, 2), np.int8)
    for o in range(k):
        for x in range(kw):
            for i in range(c):
                tap = x * c + i
                out[o // 16, 0, :, 0, tap // 2, o % 16, tap % 2] = w[o, i, :, x]
    return out


def _blocked_channel_const(v: np.ndarray, dtype: str) -> relax.Expr:
    out = np.zeros((1, -(-len(v) // 16), 1, 1, 16), dtype)
    for c, value in enumerate(v):
        out[0, c // 16, 0, 0, c % 16] = value
    return relax.const(out, dtype)


def _weights(rng, shape):
    return rng.integers(-127, 128, shape).astype(np.int8)


def _two_convs(lo: int):
    """int16 pixels -> conv -> bias -> clip(lo, 127) -> int8 -> 3x3 conv -> int32 (NCHW)."""
    rng = np.random.default_rng(0)
    w1, w2 = _weights(rng, (20, 3, 3, 3)), _weights(rng, (5, 20, 3, 3))
    bias = rng.integers(-1000, 1000, 20).astype(np.int32)
    batch = tirx.Var("batch", "int64")
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((batch, 3, 8, 8), "int16"))
    with bb.function("main", [x]):
        with bb.dataflow():
            c1 = bb.emit(R.nn.conv2d(x, relax.const(w1), padding=1, out_dtype="int32"))
            b = bb.emit(R.add(c1, relax.const(bias.reshape(1, 20, 1, 1))))
            q = bb.emit(R.astype(R.clip(b, lo, 127), "int8"))
            c2 = bb.emit(R.nn.conv2d(q, relax.const(w2), padding=1, out_dtype="int32"))
            out = bb.emit_output(c2)
        bb.emit_func_output(out)
    return bb.get(), (w1, w2, bias, batch)


def _expected_two_convs(lo: int, w1, w2, bias, batch) -> tvm.IRModule:
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((batch, 3, 8, 8), "int16"))
    pad, no_pad, one = (1, 1, 1, 1), (0, 0, 0, 0), (1, 1)

    def te(fn, *args, **kwargs):
        return bb.emit(bb.call_te(fn, *args, primfunc_name_hint=fn.__name__, **kwargs))

    with bb.function("main", [x]):
        with bb.dataflow():
            # int16 pixels in the rows layout: padded rows, 3 channels side by side
            rows = te(K.to_rows, x, pad, K.rows_extra(3, 3, 1, 10, 8))
            c1 = te(K.conv_rows, rows, relax.const(_packed_rows(w1)), one, 3, 8, 32768)
            b = bb.emit(R.add(c1, _blocked_channel_const(bias, "int32")))
            clipped = bb.emit(R.clip(b, lo, 127))
            packed2 = relax.const(_packed_conv(w2))
            if lo >= 0:  # post-ReLU: the same bytes, as uint8
                q = bb.emit(R.astype(clipped, "uint8"))
                c2 = te(K.conv_blocked, q, packed2, one, pad, one, 127)
            else:  # signed: +128, padded with 128, and -128 * sum(w) per output channel
                q = bb.emit(R.astype(clipped, "int8"))
                shifted = te(K.shift_to_uint8, q, pad)
                acc = te(K.conv_blocked, shifted, packed2, one, no_pad, one, 255)
                fix = -128 * w2.astype(np.int64).reshape(5, -1).sum(1)
                c2 = bb.emit(R.add(acc, _blocked_channel_const(fix, "int32")))
            out = bb.emit_output(te(K.from_blocked, c2, 5, "int32"))
        bb.emit_func_output(out)
    return bb.get()


@pytest.mark.parametrize("lo", [0, -128], ids=["post_relu_uint8", "signed_shifted"])
def test_rewrite_matches_expected(lo):
    before, consts = _two_convs(lo)
    after = ConvertToBlockedInt8()(before)
    tvm.ir.assert_structural_equal(after, _expected_two_convs(lo, *consts))


@pytest.mark.parametrize("lo", [0, -128], ids=["post_relu_uint8", "signed_shifted"])
def test_rewrite_is_exact_on_extreme_values(lo):
    """Inputs at the int16 extremes and weights of both signs: every border, lane and shift."""
    before, _ = _two_convs(lo)
    x = np.random.default_rng(1).choice([-32768, -1, 0, 1, 32767], (3, 3, 8, 8))
    x = x.astype(np.int16)
    got = _run(build(ConvertToBlockedInt8()(before), "host", require_integer_only=True), x)
    np.testing.assert_array_equal(got, interpret(before, x))


def test_accumulator_bound_is_checked():
    """An int32 input of unknown range could overflow the int32 accumulator: refused."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 16, 4, 4), "int32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            w = relax.const(np.ones((16, 16, 3, 3), np.int8))
            out = bb.emit_output(bb.emit(R.nn.conv2d(x, w, padding=1, out_dtype="int32")))
        bb.emit_func_output(out)
    with pytest.raises(UnsupportedModelError, match="does not fit the int32 accumulator"):
        ConvertToBlockedInt8()(bb.get())


@pytest.fixture(scope="module")
def quantized():
    """name -> int16-input quantized module (as smoothing compiles it)."""
    out = {}
    for name, make in MODELS.items():
        imported = import_onnx(make())
        calib = random_images(imported.input_shape, 64, seed=1)
        out[name] = quantize_static(imported, calib, input_dtype="int16").mod
    return out


def _run(executable, x: np.ndarray) -> np.ndarray:
    return relax.VirtualMachine(executable, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()


def _noisy(mod: tvm.IRModule, n: int) -> np.ndarray:
    shape = [int(d) for d in mod["main"].params[0].ty.shape.values[1:]]
    return np.random.default_rng(7).integers(-120, 376, (n, *shape)).astype(np.int16)


@pytest.mark.parametrize("name", list(MODELS))
def test_blocked_logits_equal_reference_and_nchw_build(quantized, name):
    mod = quantized[name]
    x = _noisy(mod, 6)
    spec = resolve_target("host")
    got = _run(build(mod, spec, require_integer_only=True), x)  # the default: blocked
    plain = cpu_pipeline(spec.tvm_target, blocked_layout=False)
    old = _run(build(mod, spec, relax_pipeline=plain, require_integer_only=True), x)
    np.testing.assert_array_equal(got, interpret(mod, x))
    np.testing.assert_array_equal(got, old)


def _fused(mod: tvm.IRModule) -> tvm.IRModule:
    with tvm.target.Target("llvm"):
        return tvm.transform.Sequential(cpu.legalize_passes(None))(ConvertToBlockedInt8()(mod))


@pytest.mark.parametrize("name", ["residual", "signed_input"])
def test_each_conv_is_one_primfunc_with_its_epilogue(quantized, name):
    """FuseOps/FuseTIR put every convolution and its requantization (and residual add) in one
    PrimFunc: nothing elementwise is left between the convolutions."""
    mod = quantized[name]
    convs = sum(
        1
        for b in mod["main"].body.blocks[0].bindings
        if isinstance(b.value, relax.Call) and b.value.op.name == "relax.nn.conv2d"
    )
    fused = _fused(mod)
    funcs = {gv.name_hint: f for gv, f in fused.functions_items() if isinstance(f, tirx.PrimFunc)}
    conv_funcs = [n for n in funcs if n.startswith("fused_conv")]
    with_epilogue = [n for n in conv_funcs if "right_shift" in n and "clip" in n]
    assert len(with_epilogue) == convs, list(funcs)
    assert len(conv_funcs) == convs + 1, list(funcs)  # and the dense layer, as a 1x1 conv
    # Between the convolutions, blocked (5-D) images are only pooled in the blocked layout and
    # (signed inputs) shifted to uint8: no layout conversion, no epilogue or residual add on
    # its own. (After a global pool, on one pixel, the pool's requantization and a view.)
    pools = ("max_pool_blocked", "spatial_sum_blocked")
    image_readers = sorted(
        n
        for n, f in funcs.items()
        if n not in conv_funcs
        and len(f.params[0].shape) == 5
        and int(f.params[0].shape[2]) * int(f.params[0].shape[3]) > 1
        and not n.startswith((*pools, "reshape"))  # a flatten into the dense layer: a view
    )
    shifts = ["shift_to_uint8"] if name == "signed_input" else []  # the one signed 3x3 input
    assert image_readers == shifts, image_readers


@pytest.mark.slow
@pytest.mark.parametrize("entry", MANIFEST, ids=[m["file"] for m in MANIFEST])
def test_bundled_int16_classifier_is_exact(entry):
    """The bundled models as smoothing compiles them (int16 noisy pixels, blocked by default):
    logits equal to the numpy interpreter's on unclipped noisy images."""
    x, _ = load_npz(ASSETS / "data" / DATA[tuple(entry["input_shape"])])
    mod = quantize_static(ASSETS / "models" / entry["file"], x[:64], input_dtype="int16").mod
    noise = np.random.default_rng(3).integers(-150, 151, (4, *x.shape[1:]))
    noisy = (x[64:68].astype(np.int16) + noise).astype(np.int16)
    got = _run(build(mod, "host", require_integer_only=True), noisy)
    np.testing.assert_array_equal(got, interpret(mod, noisy))


def _conv_kernels_asm(executable) -> dict[str, str]:
    """Assembly of each fused conv + requantization kernel's body (``*_compute_``), by name."""
    funcs: dict[str, list[str]] = {}
    current = None
    for line in executable.mod.imports[0].inspect_source("asm").splitlines():
        match = re.match(r"^([A-Za-z_][\w.]*):", line)
        if match:
            current = match.group(1)
            funcs.setdefault(current, [])
        elif current is not None:
            funcs[current].append(line)
    return {
        name: "\n".join(body)
        for name, body in funcs.items()
        if name.startswith("fused_conv")
        and ("right_shift" in name or "requantize" in name)
        and name.endswith("_compute_")
    }


@pytest.mark.parametrize(
    ("target", "mnemonic", "first_layer"),
    [
        ("x86-vnni", "vpdpbusd", "vpmaddwd"),
        ("x86-avx2", "vpmaddubsw", "vpmaddwd"),
        ("rpi5", "sdot", None),
        ("rpi4", "smull", None),
    ],
)
def test_default_build_tensorizes_every_conv(quantized, target, mnemonic, first_layer):
    """Cross-compiled (no hardware needed): in the default build every 8-bit conv kernel holds
    the target's dot-product instruction, and the int16 first layer (rows layout) vpmaddwd on
    x86."""
    kernels = _conv_kernels_asm(build(quantized["residual"], target))
    assert len(kernels) == 6, list(kernels)  # the first (int16) conv and five 8-bit ones
    first = [name for name in kernels if name.startswith("fused_conv_rows")]
    assert len(first) == 1, list(kernels)
    for name, asm in kernels.items():
        if name in first:
            assert first_layer is None or first_layer in asm, name
        else:
            assert mnemonic in asm, name


def test_pools_stay_blocked(quantized):
    """Max pools (padded, ceil mode, signed values) and the global average pool run in the
    blocked layout: no layout conversion in front of them (logits: the test above)."""
    funcs = [gv.name_hint for gv, f in _fused(quantized["pooling"]).functions_items()]
    assert sum(n.startswith("max_pool_blocked") for n in funcs) == 2, funcs
    assert sum(n.startswith("spatial_sum_blocked") for n in funcs) == 1, funcs
    assert not any("max_pool2d" in n for n in funcs), funcs


@pytest.mark.parametrize("name", ["residual", "pooling"])
def test_global_pool_sums_the_8_bit_activations(quantized, name):
    """The global average pool sums the 8-bit activations (the sum widens each element), so the
    convolution before it writes bytes, not the int32 copy the graph's cast asks for."""
    funcs = {gv.name_hint: f for gv, f in _fused(quantized[name]).functions_items()}
    sums = [f for n, f in funcs.items() if n.startswith("spatial_sum_blocked")]
    assert len(sums) == 1, list(funcs)
    assert str(sums[0].params[0].dtype) in ("int8", "uint8")
