"""The arguments that decide the compiled smoothed graph, shared by compile and tune, and the
`intsmooth tune` command line that they give."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from tvm_intsmooth.cli.common import hidden_alias, positive_int

CALIB_IMAGES = 500
TUNE_TRIALS = 1000
# `intsmooth tune` options that tune_command writes when they differ from these defaults.
TUNE_DEFAULTS = {"trials_per_iter": 64, "seed": 0, "keep": "faster", "output": None}


def add_smoothing_arguments(p: argparse.ArgumentParser) -> None:
    """The model, noise and target arguments that decide the compiled graph (compile, tune)."""
    p.add_argument("model", type=Path, help="ONNX model taking float pixels in [0, 1]")
    p.add_argument("--sigma", type=float, required=True, help="noise level in [0, 1] pixel units")
    p.add_argument(
        "--target",
        default="host",
        help="target name from targets/ (x86-vnni, x86-avx2, x86-64, rpi4, rpi5; host: the "
        "best of the x86 ones that this CPU runs) or a target JSON file (default: host)",
    )
    p.add_argument(
        "--calib",
        required=True,
        metavar="DATA",
        help="calibration data: .npz, or a dataset name (its training split is used)",
    )
    p.add_argument(
        "--calib-images",
        type=positive_int,
        default=CALIB_IMAGES,
        metavar="M",
        help=f"calibration images to use (default {CALIB_IMAGES})",
    )
    hidden_alias(p, "--calib-max", "calib_images", type=positive_int)
    p.add_argument(
        "--batch",
        type=positive_int,
        default=100,
        help="noisy samples per call of the compiled function (default 100)",
    )
    p.add_argument(
        "--clip",
        default="none",
        choices=["none", "clip"],
        help="noisy pixels: 'none' leaves them unclipped, as Cohen et al. and noise-augmented "
        "training do; 'clip' clamps them to 0..255 (default none)",
    )
    p.add_argument(
        "--bits",
        type=int,
        default=64,
        choices=[32, 64],
        help="uniform bits of the noise sampler (default 64)",
    )


def smooth_model(
    model: Path,
    calib: str | Path,
    sigma: float,
    *,
    calib_images: int = CALIB_IMAGES,
    batch: int = 100,
    clip: str = "none",
    bits: int = 64,
    dump_ir: Path | None = None,
):
    """The SmoothedModel of the ONNX ``model``, calibrated on ``calib_images`` images of the
    training split of ``calib``."""
    from tvm_intsmooth.data import load_dataset
    from tvm_intsmooth.data.images import check_images
    from tvm_intsmooth.errors import IntSmoothError
    from tvm_intsmooth.importer import import_onnx
    from tvm_intsmooth.pipeline.smooth import smooth

    if not sigma > 0:
        raise IntSmoothError(f"--sigma must be > 0, got {sigma}")
    imported = import_onnx(model)
    x, _ = load_dataset(str(calib), split="train", max_count=calib_images)
    check_images(x, imported.input_shape, f"calibration data {calib}")
    print(f"quantizing {model} (calibration: {len(x)} images of {calib}) ...", flush=True)
    return smooth(imported, x, sigma, batch=batch, clip=clip, bits=bits, dump_ir=dump_ir)


def smoothed_model(args: argparse.Namespace, dump_ir: Path | None = None):
    """The SmoothedModel that the arguments of :func:`add_smoothing_arguments` describe."""
    return smooth_model(
        args.model,
        args.calib,
        args.sigma,
        calib_images=args.calib_images,
        batch=args.batch,
        clip=args.clip,
        bits=args.bits,
        dump_ir=dump_ir,
    )


def tune_command(args: argparse.Namespace, trials: int = TUNE_TRIALS, **options) -> str:
    """The `intsmooth tune` command line for the model of ``args`` (the arguments of
    :func:`add_smoothing_arguments`), with ``trials`` and the tune ``options`` of
    ``TUNE_DEFAULTS`` that differ from their defaults."""
    words = ["intsmooth", "tune", str(args.model), "--sigma", str(args.sigma)]
    words += ["--calib", str(args.calib), "--target", str(args.target)]
    if args.calib_images != CALIB_IMAGES:
        words += ["--calib-images", str(args.calib_images)]
    words += ["--batch", str(args.batch), "--trials", str(trials)]
    if args.clip != "none":
        words += ["--clip", args.clip]
    if args.bits != 64:
        words += ["--bits", str(args.bits)]
    for option, default in TUNE_DEFAULTS.items():
        value = options.get(option, default)
        if value != default:
            words += ["-o" if option == "output" else "--" + option.replace("_", "-"), str(value)]
    return shlex.join(words)
