"""Train the zoo's models briefly and export them (not run by the tests; their outputs are
committed): ``python tests/zoo/train_zoo.py [NAME ...]``.

Each model is trained for STEPS steps of Adam (batch 32, one thread) on the first 400 bundled
images with Gaussian noise of sigma 0.25 (noise-augmented training, as the smoothed classifier
will see its inputs), then exported in eval mode to ``tests/zoo/NAME.onnx`` with a dynamic batch
axis (``torch.onnx.export(..., dynamo=False)``: the dynamo exporter needs onnxscript) and its
weights to ``tests/zoo/NAME.pt`` (for the PyTorch-frontend path). ``manifest.json`` records the
steps, the seconds and the noisy held-out accuracy of each.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from zoo_data import SIGMA, TRAIN, zoo_data  # noqa: E402
from zoo_models import ZOO  # noqa: E402

STEPS = 400
BATCH = 32


def train(name: str, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    make, shape, file, upsample = ZOO[name]
    x, y = zoo_data(file, upsample)
    images = torch.from_numpy(x.astype(np.float32) / 255)
    labels = torch.from_numpy(y.astype(np.int64))
    model = make()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(seed)
    start = time.time()
    model.train()
    for step in range(STEPS):
        idx = torch.from_numpy(rng.integers(0, TRAIN, BATCH))
        batch = images[idx] + SIGMA * torch.randn(BATCH, *shape)
        out = model(batch)
        if name == "vgg":  # the model ends in a softmax: train on its log
            loss = torch.nn.functional.nll_loss(torch.log(out + 1e-9), labels[idx])
        else:
            loss = torch.nn.functional.cross_entropy(out, labels[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        for group in optimizer.param_groups:  # cosine decay
            group["lr"] = 3e-3 * 0.5 * (1 + np.cos(np.pi * (step + 1) / STEPS))
    seconds = time.time() - start
    model.eval()
    with torch.no_grad():
        held = images[TRAIN:]
        noisy = (held[None] + SIGMA * torch.randn(4, *held.shape)).reshape(-1, *shape)
        accuracy = float((model(noisy).argmax(1) == labels[TRAIN:].repeat(4)).float().mean())
    example = torch.zeros(2, *shape)
    torch.onnx.export(
        model,
        (example,),
        str(HERE / f"{name}.onnx"),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    torch.save(model.state_dict(), HERE / f"{name}.pt")
    return {"steps": STEPS, "seconds": round(seconds, 1), "noisy_held_out_accuracy": accuracy}


def main(names: list[str]) -> None:
    torch.set_num_threads(1)
    manifest_path = HERE / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    for name in names or list(ZOO):
        manifest[name] = train(name)
        print(name, manifest[name], flush=True)
        manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
