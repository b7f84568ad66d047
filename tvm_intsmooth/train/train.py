"""Train a classifier with Gaussian noise augmentation (Cohen et al. 2019) and export it to ONNX.

Run as ``python -m tvm_intsmooth.train --help``. Noise N(0, sigma^2) is added to the pixels in
[0, 1] units before the model's own normalization layer, exactly as the smoothed classifier will
see it. Training is deterministic for a given seed and thread count: shuffling and noise come from
one seeded generator whose state is saved in every epoch's checkpoint, so ``--resume`` continues
the run as if it had never stopped.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from tvm_intsmooth.data import load_dataset
from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.train.export import export_onnx
from tvm_intsmooth.train.models import MODEL_NAMES, build_model

# Arguments that must not change between a run and its resumption.
_RESUME_KEYS = ("dataset", "model", "sigma", "epochs", "lr", "schedule", "batch_size", "seed")


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of the training script."""
    p = argparse.ArgumentParser(
        prog="python -m tvm_intsmooth.train",
        description="Train a CNN or ResNet-20 with Gaussian noise augmentation, export ONNX.",
    )
    p.add_argument(
        "--dataset",
        default="fashion-mnist",
        help="dataset spec (see tvm_intsmooth.data.load_dataset): fashion-mnist, "
        "fashion-mnist32, digits, cifar10:DIR, caltech101:DIR[:SIZE], or an .npz "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--test-dataset",
        default=None,
        help="spec of the test data (default: the --dataset spec, split 'test')",
    )
    p.add_argument("--model", choices=MODEL_NAMES, default="cnn", help="architecture")
    p.add_argument(
        "--sigma",
        type=float,
        default=0.25,
        help="std of the Gaussian noise added to pixels in [0,1] units (0 = none)",
    )
    p.add_argument("--epochs", type=int, default=5, help="number of training epochs")
    p.add_argument("--lr", type=float, default=0.05, help="peak SGD learning rate")
    p.add_argument(
        "--schedule",
        choices=("cosine", "step", "constant"),
        default="cosine",
        help="lr schedule: cosine decay per step, step (x0.1 at 50%% and 75%% of the "
        "epochs), or constant",
    )
    p.add_argument("--momentum", type=float, default=0.9, help="SGD (Nesterov) momentum")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="L2 weight decay")
    p.add_argument("--batch-size", type=int, default=128, help="training batch size")
    p.add_argument("--hflip", action="store_true", help="random horizontal flips")
    p.add_argument("--max-train", type=int, default=None, help="use only the first N train images")
    p.add_argument("--max-test", type=int, default=None, help="use only the first N test images")
    p.add_argument("--seed", type=int, default=0, help="seed for init, shuffling and noise")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--output", type=Path, default=None, help="ONNX file to write at the end")
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="checkpoint written after every epoch (default: OUTPUT with .ckpt.pt, "
        "none without --output)",
    )
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _channel_stats(x: np.ndarray) -> tuple[list[float], list[float]]:
    pixels = x.transpose(1, 0, 2, 3).reshape(x.shape[1], -1) / 255.0
    return pixels.mean(axis=1).tolist(), pixels.std(axis=1).tolist()


def _lr_factor(schedule: str, step: int, total: int) -> float:
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    if schedule == "step":
        progress = step / total
        return 0.01 if progress >= 0.75 else 0.1 if progress >= 0.5 else 1.0
    return 1.0


def evaluate(
    model: nn.Module, x: np.ndarray, y: np.ndarray, sigma: float = 0.0, seed: int = 0
) -> float:
    """Top-1 accuracy on uint8 images, with one draw of N(0, sigma^2) pixel noise per image."""
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    correct = 0
    with torch.no_grad():
        for begin in range(0, len(x), 500):
            xb = torch.from_numpy(x[begin : begin + 500]).float() / 255.0
            if sigma > 0:
                xb = xb + sigma * torch.randn(xb.shape, generator=gen)
            pred = model(xb).argmax(dim=1).numpy()
            correct += int((pred == y[begin : begin + 500]).sum())
    return correct / max(len(x), 1)


def _save_checkpoint(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _recorded_command(argv: list[str]) -> str:
    kept = [a for a in argv if a != "--resume"]
    return shlex.join(["python", "-m", "tvm_intsmooth.train", *kept])


def _optimizer(model: nn.Module, args: argparse.Namespace, total_steps: int):
    """SGD with Nesterov momentum and the learning-rate schedule over ``total_steps``."""
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=args.lr,
        momentum=args.momentum,
        nesterov=True,
        weight_decay=args.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _lr_factor(args.schedule, s, total_steps)
    )
    return optimizer, scheduler


def _checkpoint_path(args: argparse.Namespace) -> Path | None:
    if args.checkpoint is None and args.output is not None:
        return args.output.with_suffix(".ckpt.pt")
    return args.checkpoint


def _resume(checkpoint: Path, args: argparse.Namespace, model, optimizer, scheduler, gen) -> int:
    """Restore the training state saved after an epoch; return the epochs already done."""
    state = torch.load(checkpoint, weights_only=False)
    for key in _RESUME_KEYS:
        if state["args"][key] != getattr(args, key):
            raise IntSmoothError(
                f"{checkpoint}: saved with --{key.replace('_', '-')} {state['args'][key]}, "
                f"now {getattr(args, key)}; resume with the same arguments"
            )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    gen.set_state(state["generator"])
    print(f"resumed from {checkpoint} after epoch {state['epoch']}", flush=True)
    return state["epoch"]


def _train_epoch(
    epoch: int, args: argparse.Namespace, model, optimizer, scheduler, gen, x_all, y_all
) -> None:
    """One pass over the training set in a random order, with Gaussian noise (and flips)."""
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    perm = torch.randperm(len(x_all), generator=gen)
    started = time.time()
    bar = tqdm(
        range(math.ceil(len(x_all) / args.batch_size)),
        desc=f"epoch {epoch + 1}/{args.epochs}",
        disable=args.quiet,
        mininterval=5.0,
        file=sys.stderr,
    )
    seen, loss_sum, correct = 0, 0.0, 0
    for step in bar:
        idx = perm[step * args.batch_size : (step + 1) * args.batch_size]
        xb = (x_all[idx].float() / 255.0).contiguous(memory_format=torch.channels_last)
        if args.hflip:
            flip = torch.rand(len(idx), generator=gen) < 0.5
            xb = torch.where(flip.view(-1, 1, 1, 1), xb.flip(3), xb)
        if args.sigma > 0:
            xb = xb + args.sigma * torch.randn(xb.shape, generator=gen)
        logits = model(xb)
        loss = loss_fn(logits, y_all[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        seen += len(idx)
        loss_sum += loss.item() * len(idx)
        correct += int((logits.argmax(1) == y_all[idx]).sum())
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}", refresh=False)
    print(
        f"epoch {epoch + 1}: train loss {loss_sum / seen:.4f}, noisy train acc "
        f"{correct / seen:.4f}, {time.time() - started:.0f}s",
        flush=True,
    )


def _export(model, args: argparse.Namespace, input_shape, argv: list[str] | None) -> None:
    meta = {
        "command": _recorded_command(argv if argv is not None else sys.argv[1:]),
        "dataset": args.dataset,
        "model": args.model,
        "sigma": str(args.sigma),
        "epochs": str(args.epochs),
        "seed": str(args.seed),
        "input_shape": "x".join(str(d) for d in input_shape),
    }
    export_onnx(
        model.to(memory_format=torch.contiguous_format), input_shape, args.output, metadata=meta
    )
    print(f"wrote {args.output}", flush=True)


def run(args: argparse.Namespace, argv: list[str] | None = None) -> dict:
    """Train as ``args`` says; return the final model and its clean and noisy test accuracy."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x_train, y_train = load_dataset(args.dataset, "train", max_count=args.max_train)
    x_test, y_test = load_dataset(
        args.test_dataset or args.dataset, "test", max_count=args.max_test
    )
    input_shape = tuple(int(d) for d in x_train.shape[1:])
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    mean, std = _channel_stats(x_train)
    # channels_last makes oneDNN's CPU convolutions 1.5-2x faster; the arithmetic is the same.
    model = build_model(args.model, input_shape, num_classes, mean, std).to(
        memory_format=torch.channels_last
    )
    total = args.epochs * math.ceil(len(x_train) / args.batch_size)
    optimizer, scheduler = _optimizer(model, args, total)
    gen = torch.Generator().manual_seed(args.seed)
    checkpoint = _checkpoint_path(args)
    start_epoch = 0
    if args.resume and checkpoint is not None and checkpoint.exists():
        start_epoch = _resume(checkpoint, args, model, optimizer, scheduler, gen)

    x_all, y_all = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for epoch in range(start_epoch, args.epochs):
        _train_epoch(epoch, args, model, optimizer, scheduler, gen, x_all, y_all)
        if checkpoint is not None:
            state = {
                "epoch": epoch + 1,
                "args": vars(args),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "generator": gen.get_state(),
            }
            _save_checkpoint(checkpoint, state)

    clean = evaluate(model, x_test, y_test)
    noisy = evaluate(model, x_test, y_test, sigma=args.sigma, seed=args.seed + 1)
    print(
        f"test accuracy on {len(x_test)} images: clean {clean:.4f}, "
        f"noisy (sigma={args.sigma}) {noisy:.4f}",
        flush=True,
    )
    if args.output is not None:
        _export(model, args, input_shape, argv)
    return {
        "model": model,
        "clean_accuracy": clean,
        "noisy_accuracy": noisy,
        "input_shape": input_shape,
    }


def main(argv: list[str] | None = None) -> dict:
    """Parse ``argv`` (default: sys.argv) and train."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or args.threads < 1:
        raise IntSmoothError("--epochs, --batch-size and --threads must be positive")
    if args.sigma < 0:
        raise IntSmoothError(f"--sigma {args.sigma}: the noise level must be >= 0")
    return run(args, argv)
