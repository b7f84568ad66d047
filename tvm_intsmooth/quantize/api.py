"""The narrow public API of quantization: ``quantize_static`` and the quantized artifact."""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tvm

from ..errors import DataError, IntSmoothError
from ..importer import ModelLike, import_model
from .calibrate import CalibrationReader, collect_ranges
from .quantize_to_integer import QuantizeToInteger

ARTIFACT_FORMAT = "tvm_intsmooth.quantized/1"


@dataclass
class QuantizedModel:
    """An integer-only classifier: ``mod["main"](pixels) -> int32 logits``."""

    mod: tvm.IRModule
    input_shape: tuple[int, ...]
    num_classes: int
    input_dtype: str
    calibration: dict[str, float] = field(default_factory=dict)
    source: str = ""

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model as one zip file (the Relax module as TVM JSON, plus metadata)."""
        path = Path(path)
        meta = {
            "format": ARTIFACT_FORMAT,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "input_dtype": self.input_dtype,
            "calibration": self.calibration,
            "source": self.source,
        }
        tmp = path.with_name(path.name + ".partial")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("module.json", tvm.ir.save_json(self.mod))
            zf.writestr("meta.json", json.dumps(meta, indent=1))
        tmp.replace(path)  # never leave a half-written artifact under the final name
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> QuantizedModel:
        """Read a model written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise IntSmoothError(f"quantized model {path}: no such file.")
        try:
            with zipfile.ZipFile(path) as zf:
                meta = json.loads(zf.read("meta.json"))
                mod = tvm.ir.load_json(zf.read("module.json").decode())
        except (zipfile.BadZipFile, KeyError, ValueError) as err:
            raise IntSmoothError(
                f"quantized model {path} is corrupt or not a tvm_intsmooth artifact ({err})."
            ) from None
        if meta.get("format") != ARTIFACT_FORMAT:
            raise IntSmoothError(f"quantized model {path}: unknown format {meta.get('format')!r}.")
        return cls(
            mod,
            tuple(meta["input_shape"]),
            meta["num_classes"],
            meta["input_dtype"],
            meta["calibration"],
            meta["source"],
        )


def check_images(images: np.ndarray, input_shape: tuple[int, ...], what: str) -> np.ndarray:
    """Validate a batch of integer pixel images against a model's input shape."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise DataError(f"{what}: images must be uint8 pixels 0..255, got dtype {images.dtype}.")
    if images.shape[1:] != tuple(input_shape) or images.ndim != len(input_shape) + 1:
        raise DataError(
            f"{what}: images have shape {images.shape}, but the model takes "
            f"N x {' x '.join(map(str, input_shape))}."
        )
    if len(images) == 0:
        raise DataError(f"{what}: no images.")
    return images


def quantize_static(
    model: ModelLike,
    calibration_images: np.ndarray | Iterable[np.ndarray],
    *,
    input_dtype: str = "uint8",
    batch_size: int = 64,
    target="host",
) -> QuantizedModel:
    """Quantize an ONNX classifier to integer-only arithmetic.

    Args:
        model: ONNX file, ``onnx.ModelProto``, a float Relax module from TVM's frontends
            (``from_onnx(..., keep_params_in_input=False)``, ``from_exported_program``), or the
            result of :func:`import_onnx`. The model takes float pixels in [0, 1] (pixel
            q / 255), with any normalization inside it.
        calibration_images: uint8 images N x C x H x W (or an iterable of such batches, for
            example a :class:`CalibrationReader`) on which the activation ranges are measured.
        input_dtype: integer input dtype of the result ("uint8", or "int16" for noisy inputs).
        batch_size: calibration batch size when an array is given.
        target: where calibration runs (the host by default).

    Returns:
        A :class:`QuantizedModel` whose ``mod["main"]`` maps integer pixels to int32 logits.
    """
    imported = import_model(model)
    if isinstance(calibration_images, np.ndarray):
        check_images(calibration_images, imported.input_shape, "calibration data")
        calibration_images = CalibrationReader(calibration_images, batch_size)
    ranges = collect_ranges(imported.mod, calibration_images, target=target)
    mod = QuantizeToInteger(ranges, input_dtype=input_dtype)(imported.mod)
    return QuantizedModel(
        mod, imported.input_shape, imported.num_classes, input_dtype, ranges, imported.source
    )
