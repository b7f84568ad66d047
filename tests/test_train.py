"""Training script: ONNX export matches torch, checkpoints resume exactly, models export."""

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")  # the train extra

from tvm_intsmooth.data import load_dataset  # noqa: E402
from tvm_intsmooth.data.fashion_mnist import DEFAULT_DIR  # noqa: E402
from tvm_intsmooth.errors import IntSmoothError  # noqa: E402
from tvm_intsmooth.train import train as train_module  # noqa: E402
from tvm_intsmooth.train.export import export_onnx  # noqa: E402
from tvm_intsmooth.train.make_manifest import onnx_accuracy, sha256_of  # noqa: E402
from tvm_intsmooth.train.models import build_model  # noqa: E402

SUPPORTED_OPS = {
    "Conv", "Relu", "MaxPool", "AveragePool", "GlobalAveragePool", "Flatten", "Reshape",
    "Gemm", "MatMul", "Add", "BatchNormalization", "Sub", "Div", "Mul",
}  # fmt: skip

TINY = ["--dataset", "digits", "--max-train", "300", "--max-test", "100", "--batch-size", "50"]
TINY += ["--threads", "1", "--quiet", "--lr", "0.05", "--seed", "3"]
MODELS = Path(__file__).resolve().parents[1] / "tvm_intsmooth" / "assets" / "models"
HAVE_FASHION = (DEFAULT_DIR / "t10k-images-idx3-ubyte.gz").exists()


def _onnx_logits(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def _check_graph(path, input_shape):
    proto = onnx.load(str(path))
    assert {n.op_type for n in proto.graph.node} <= SUPPORTED_OPS
    assert proto.opset_import[0].version == 17
    assert [i.name for i in proto.graph.input] == ["input"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == list(input_shape)
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in proto.graph.initializer)


def _check_single_file_onnx(path, input_shape):
    _check_graph(path, input_shape)
    assert sorted(p.name for p in path.parent.iterdir() if p.suffix != ".pt") == [path.name]


def test_tiny_run_exports_matching_onnx(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    result = train_module.main([*TINY, "--epochs", "1", "--output", str(out)])
    assert "test accuracy on 100 images: clean" in capsys.readouterr().out
    _check_single_file_onnx(out, (1, 8, 8))
    x, _ = load_dataset("digits", "test", max_count=37)
    pixels = x.astype(np.float32) / 255.0
    with torch.no_grad():
        expected = result["model"].eval()(torch.from_numpy(pixels)).numpy()
    np.testing.assert_allclose(_onnx_logits(out, pixels), expected, atol=1e-4, rtol=0)
    np.testing.assert_allclose(_onnx_logits(out, pixels[:1]), expected[:1], atol=1e-4, rtol=0)
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["command"].startswith("python -m tvm_intsmooth.train --dataset digits")
    assert (meta["dataset"], meta["sigma"], meta["input_shape"]) == ("digits", "0.25", "1x8x8")


def test_resume_continues_where_it_stopped(tmp_path, monkeypatch, capsys):
    straight = train_module.main([*TINY, "--epochs", "2", "--checkpoint", str(tmp_path / "a.pt")])
    ckpt = tmp_path / "b.pt"
    save = train_module._save_checkpoint

    def save_then_crash(path, state):
        save(path, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train_module.main([*TINY, "--epochs", "2", "--checkpoint", str(ckpt)])
    assert torch.load(ckpt, weights_only=False)["epoch"] == 1
    monkeypatch.setattr(train_module, "_save_checkpoint", save)
    capsys.readouterr()
    resumed = train_module.main([*TINY, "--epochs", "2", "--checkpoint", str(ckpt), "--resume"])
    log = capsys.readouterr().out
    assert "resumed from" in log and "epoch 1:" not in log and "epoch 2:" in log
    for (name, a), b in zip(
        straight["model"].state_dict().items(), resumed["model"].state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    assert torch.load(ckpt, weights_only=False)["epoch"] == 2
    with pytest.raises(IntSmoothError, match="--sigma 0.25, now 0.5"):
        train_module.main([*TINY, "--epochs", "2", "--checkpoint", str(ckpt), "--resume",
                           "--sigma", "0.5"])  # fmt: skip


def test_resnet20_geometry_and_export(tmp_path):
    model = build_model("resnet20", (3, 32, 32), 10, [0.3, 0.4, 0.5], [0.2, 0.25, 0.3])
    # He et al.'s ResNet-20 has 269,722 parameters; the two projection shortcuts add
    # 16*32 + 32*64 conv weights and 2*(32 + 64) batch-norm parameters.
    assert sum(p.numel() for p in model.parameters()) == 269_722 + 2_560 + 192
    # Freshly built, all batch norms are equal: the exporter's shared-constant Identity nodes
    # must not survive into the graph.
    _check_single_file_onnx(export_onnx(model, (3, 32, 32), tmp_path / "f" / "f.onnx"), (3, 32, 32))
    torch.manual_seed(0)
    with torch.no_grad():  # non-trivial batch-norm statistics, so folding them is checked
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    path = export_onnx(model, (3, 32, 32), tmp_path / "r" / "r.onnx")
    _check_single_file_onnx(path, (3, 32, 32))
    x = torch.rand(5, 3, 32, 32)
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    np.testing.assert_allclose(_onnx_logits(path, x.numpy()), expected, atol=1e-4, rtol=0)
    # The normalization layer is the graph's first node: (input - mean) / std.
    first = onnx.load(str(path)).graph.node[:2]
    assert [n.op_type for n in first] == ["Sub", "Div"] and first[0].input[0] == "input"


def _manifest_models():
    manifest = MODELS / "manifest.json"
    return json.loads(manifest.read_text())["models"] if manifest.exists() else []


@pytest.mark.parametrize("entry", _manifest_models(), ids=lambda e: e["file"])
def test_bundled_model_matches_manifest(entry):
    path = MODELS / entry["file"]
    assert sha256_of(path) == entry["sha256"]
    _check_graph(path, entry["input_shape"])
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["command"] == entry["command"] and float(meta["sigma"]) == entry["sigma"]
    if entry["dataset"].startswith("fashion-mnist") and not HAVE_FASHION:
        pytest.skip("dataset-fashion-mnist not installed")
    # Every 10th test image: the accuracy must agree with the full-set figure to within a
    # few points (binomial standard error on 1,000 images is about 1 point).
    x, y = load_dataset(entry["dataset"], "test", skip=10)
    assert abs(onnx_accuracy(path, x, y) - entry["clean_test_accuracy"]) < 0.04
