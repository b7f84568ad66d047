"""``intsmooth quantize``: ONNX model -> integer-only artifact, with its float agreement."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tvm_intsmooth.cli.common import positive_int

HELP = "quantize an ONNX classifier to integer-only arithmetic"
# What is kept when a file cannot be written (cli/main.py prints it)
KEPT_ON_DISK_ERROR = (
    "the model is written to a temporary file renamed only when complete, so an earlier file "
    "at -o is unchanged"
)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "quantize",
        help=HELP,
        description=HELP
        + (
            ". Calibrates activation ranges on DATA, writes the quantized artifact, checks that it "
            "is integer-only and prints float vs integer top-1 agreement (and accuracy) on DATA."
        ),
    )
    p.add_argument("model", type=Path, help="ONNX model taking float pixels in [0, 1]")
    p.add_argument(
        "--calib",
        required=True,
        metavar="DATA",
        help="calibration data: an .npz (x uint8 N x C x H x W, y labels) or a "
        "dataset name such as fashion-mnist (its training split)",
    )
    p.add_argument(
        "--calib-images",
        type=positive_int,
        default=None,
        metavar="M",
        help="calibration images to use (default: all)",
    )
    p.add_argument(
        "--eval",
        default=None,
        metavar="DATA",
        help="data to measure float vs integer agreement on (default: the calibration data)",
    )
    p.add_argument(
        "--input-dtype",
        default="uint8",
        choices=["uint8", "int16"],
        help="integer input dtype (int16 leaves room for noise; default uint8)",
    )
    p.add_argument("-o", "--output", required=True, type=Path, help="artifact to write (.zip)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tvm_intsmooth.analysis import check_integer_only
    from tvm_intsmooth.data import load_dataset
    from tvm_intsmooth.data.images import check_images
    from tvm_intsmooth.importer import import_onnx
    from tvm_intsmooth.pipeline.quantize import quantize_static
    from tvm_intsmooth.runtime import CompiledClassifier, float_inputs

    imported = import_onnx(args.model)
    x, y = load_dataset(str(args.calib), split="train", max_count=args.calib_images)
    check_images(x, imported.input_shape, f"calibration data {args.calib}")
    print(f"calibrating {imported.source} on {len(x)} images of {args.calib} ...", flush=True)
    qmodel = quantize_static(imported, x, input_dtype=args.input_dtype)
    check_integer_only(qmodel.mod, raise_on_error=True)
    qmodel.save(args.output)
    if args.eval is not None:
        x, y = load_dataset(str(args.eval))
        check_images(x, imported.input_shape, f"evaluation data {args.eval}")
    float_pred = CompiledClassifier(imported.mod).logits(float_inputs(x)).argmax(1)
    int_pred = CompiledClassifier(qmodel.mod).logits(x.astype(args.input_dtype)).argmax(1)
    agreement = float(np.mean(float_pred == int_pred))
    print(f"wrote {args.output} (integer-only: no floating-point dtype or op)")
    print(
        f"top-1 agreement float vs integer: {100 * agreement:.2f}% on {len(x)} clean images "
        f"of {args.eval or args.calib} ({args.input_dtype} input, calibrated on clean images; "
        "`intsmooth compile` reports the noisy-calibrated int16 model it deploys)"
    )
    print(
        f"accuracy: float {100 * np.mean(float_pred == y):.2f}%, "
        f"integer {100 * np.mean(int_pred == y):.2f}%"
    )
    return 0
