"""The model zoo (tests/zoo): seven small classifiers of the kinds deployed on a Raspberry Pi,
trained briefly on the bundled images by tests/zoo/train_zoo.py (their ONNX files and weights are
committed, not trained here), each through both import paths: the ONNX file (pre-scan + TVM's
from_onnx) and the PyTorch module (torch.export + TVM's from_exported_program).

For each: the compiled smoothed classifier is integer-only (graph and kernels); its base
classifier (noisy calibration, int16 input: the model ``compile`` deploys) agrees with the float
model (onnxruntime, or PyTorch) on >= 97% of noisy copies of the 100 held-out images; and its
vote counts equal the numpy integer reference's on a few images.

``python tests/test_model_zoo.py`` prints the zoo table (docs/operators.md).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ZOO_DIR = Path(__file__).parent / "zoo"
sys.path.insert(0, str(ZOO_DIR))

from zoo_data import SIGMA, TRAIN, noisy_held_out, zoo_data  # noqa: E402
from zoo_models import ZOO  # noqa: E402

BATCH = 20
CALIBRATION = 200
FAST = {("mobilenet_v3", "onnx")}


@dataclass
class ZooResult:
    name: str
    path: str
    ops: list[str]
    agreement: float
    compile_seconds: float
    counts: list[list[int]]
    reference: list[list[int]]
    float_ops: list


def _float_onnx(name: str):
    import onnxruntime as ort

    session = ort.InferenceSession(str(ZOO_DIR / f"{name}.onnx"))
    return lambda x: session.run(None, {"input": x})[0]


def _torch_module(name: str):
    import torch

    make, shape, _, _ = ZOO[name]
    net = make()
    net.load_state_dict(torch.load(ZOO_DIR / f"{name}.pt", weights_only=True))
    return net.eval(), shape


def _float_torch(net):
    import torch

    def run(x):
        with torch.no_grad():
            return net(torch.from_numpy(x)).numpy()

    return run


def _model(name: str, path: str):
    """(what tis.smooth takes, the float reference, the ops the model is made of)."""
    if path == "onnx":
        import onnx

        proto = onnx.load(str(ZOO_DIR / f"{name}.onnx"))
        ops = sorted({n.op_type for n in proto.graph.node})
        return ZOO_DIR / f"{name}.onnx", _float_onnx(name), ops
    import torch

    net, shape = _torch_module(name)
    torch.set_num_threads(1)
    batch = {"x": {0: torch.export.Dim("batch", min=1, max=4096)}}
    program = torch.export.export(net, (torch.zeros(2, *shape),), dynamic_shapes=batch)
    ops = sorted(
        {
            str(node.target).split(".")[1]
            for node in program.graph.nodes
            if node.op == "call_function"
        }
    )
    return program, _float_torch(net), ops


def run_zoo(name: str, path: str, images: int = 2) -> ZooResult:
    import tvm
    from tvm import relax

    import tvm_intsmooth as tis
    from tvm_intsmooth.runtime import CompiledClassifier
    from tvm_intsmooth.smoothing.reference import reference_counts

    _, _, file, upsample = ZOO[name]
    x, _ = zoo_data(file, upsample)
    model, float_model, ops = _model(name, path)
    start = time.time()
    smoothed = tis.smooth(model, x[:CALIBRATION], SIGMA, batch=BATCH)
    ex = tis.build(smoothed.mod, "host", require_integer_only=True)
    seconds = time.time() - start
    classifier = tis.SmoothedClassifier(relax.VirtualMachine(ex, tvm.cpu()), smoothed.metadata())
    noisy = noisy_held_out(x)
    base = CompiledClassifier(smoothed.quantized.mod)  # int16 noisy pixels -> int32 logits
    int_pred = base.logits(noisy).argmax(1)
    float_pred = float_model(noisy.astype(np.float32) / np.float32(255)).argmax(1)
    seed, n = 2026, 2 * BATCH
    counts = [classifier.counts(x[TRAIN + i], n, seed, stream=i).tolist() for i in range(images)]
    reference = [
        reference_counts(smoothed, x[TRAIN + i], n, seed, i).tolist() for i in range(images)
    ]
    return ZooResult(
        name,
        path,
        ops,
        float(np.mean(int_pred == float_pred)),
        seconds,
        counts,
        reference,
        tis.check_integer_only(smoothed.mod),
    )


CASES = [(name, path) for name in ZOO for path in ("onnx", "pytorch")]


@pytest.mark.parametrize(
    ("name", "path"),
    [pytest.param(*c, marks=[] if c in FAST else [pytest.mark.slow]) for c in CASES],
)
def test_zoo_model_is_integer_agrees_and_counts_match_the_reference(name, path):
    if path == "pytorch":
        pytest.importorskip("torch")
    result = run_zoo(name, path)
    assert result.float_ops == []
    assert result.agreement >= 0.97, f"{name} via {path}: {result.agreement:.4f}"
    assert result.counts == result.reference
    assert all(sum(c) == 2 * BATCH for c in result.counts)


def zoo_table(cases=CASES) -> str:
    rows = [
        "| model | path | ops | agreement (400 noisy held-out) | compile s |",
        "|---|---|---|---|---|",
    ]
    for name, path in cases:
        r = run_zoo(name, path)
        assert r.counts == r.reference and not r.float_ops
        rows.append(
            f"| {name} | {path} | {', '.join(r.ops)} | {100 * r.agreement:.2f}% "
            f"| {r.compile_seconds:.1f} |"
        )
        print(rows[-1], flush=True)
    return "\n".join(rows)


if __name__ == "__main__":
    wanted = sys.argv[1:]
    print(zoo_table([c for c in CASES if not wanted or c[0] in wanted]))
