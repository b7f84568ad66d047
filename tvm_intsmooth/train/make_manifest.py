"""Evaluate a bundled ONNX model and write its entry in ``assets/models/manifest.json``.

Run as ``python -m tvm_intsmooth.train.make_manifest MODEL.onnx [...]``. The training command,
dataset, sigma, epochs and seed are read from the model's ONNX metadata (the training script
writes them); accuracy is measured with ONNX Runtime on the dataset's full test split, clean and
with one draw of N(0, sigma^2) pixel noise per image from a fixed numpy seed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx

from tvm_intsmooth.data import load_dataset
from tvm_intsmooth.errors import IntSmoothError

DEFAULT_MANIFEST = Path(__file__).resolve().parents[1] / "assets" / "models" / "manifest.json"
NOISE_SEED = 2024


def onnx_accuracy(
    path: str | Path, x: np.ndarray, y: np.ndarray, sigma: float = 0.0, seed: int = NOISE_SEED
) -> float:
    """Top-1 accuracy of an ONNX model (input: pixel / 255) under ONNX Runtime, optionally noisy."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    rng = np.random.default_rng(seed)
    correct = 0
    for begin in range(0, len(x), 500):
        xb = x[begin : begin + 500].astype(np.float32) / 255.0
        if sigma > 0:
            xb = xb + np.float32(sigma) * rng.standard_normal(xb.shape, dtype=np.float32)
        logits = session.run(None, {input_name: xb})[0]
        correct += int((logits.argmax(axis=1) == y[begin : begin + 500]).sum())
    return correct / len(x)


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def manifest_entry(path: str | Path) -> dict:
    """The manifest entry of an ONNX model written by the training script."""
    path = Path(path)
    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    missing = {"command", "dataset", "sigma", "epochs", "seed", "input_shape"} - meta.keys()
    if missing:
        raise IntSmoothError(
            f"{path}: no training metadata ({', '.join(sorted(missing))}); export it with "
            "python -m tvm_intsmooth.train"
        )
    sigma = float(meta["sigma"])
    x, y = load_dataset(meta["dataset"], "test")
    return {
        "file": path.name,
        "command": meta["command"],
        "model": meta.get("model", ""),
        "dataset": meta["dataset"],
        "input_shape": [int(d) for d in meta["input_shape"].split("x")],
        "input": "float32 N x C x H x W, pixel / 255, named 'input'",
        "sigma": sigma,
        "epochs": int(meta["epochs"]),
        "seed": int(meta["seed"]),
        "test_images": int(len(x)),
        "clean_test_accuracy": round(onnx_accuracy(path, x, y), 4),
        "noisy_test_accuracy": round(onnx_accuracy(path, x, y, sigma=sigma), 4),
        "noise_seed": NOISE_SEED,
        "sha256": sha256_of(path),
    }


def update_manifest(model_paths: list[Path], manifest: Path = DEFAULT_MANIFEST) -> dict:
    """Evaluate each model and replace (or add) its entry in ``manifest``; returns the manifest."""
    data = json.loads(manifest.read_text()) if manifest.exists() else {"models": []}
    data["evaluation"] = (
        "python -m tvm_intsmooth.train.make_manifest FILE: ONNX Runtime top-1 accuracy on the "
        "dataset's full test split, clean and with one N(0, sigma^2) draw per pixel "
        f"(numpy default_rng({NOISE_SEED})), pixels in [0,1] units"
    )
    for path in model_paths:
        entry = manifest_entry(path)
        data["models"] = [m for m in data["models"] if m["file"] != entry["file"]] + [entry]
        print(json.dumps(entry, indent=2), flush=True)
    data["models"].sort(key=lambda m: m["file"])
    manifest.write_text(json.dumps(data, indent=2) + "\n")
    return data


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m tvm_intsmooth.train.make_manifest",
        description="Evaluate ONNX models and write their entries in the models manifest.",
    )
    parser.add_argument("models", nargs="+", type=Path, help="ONNX files made by the trainer")
    parser.add_argument(
        "--manifest", type=Path, default=DEFAULT_MANIFEST, help="manifest to update (%(default)s)"
    )
    args = parser.parse_args(argv)
    update_manifest(args.models, args.manifest)


if __name__ == "__main__":
    main()
