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

from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.importer import ImportedModel, ModelLike
from tvm_intsmooth.pipeline.calibrate import Calibration, calibrate
from tvm_intsmooth.pipeline.canonicalize import canonical_model
from tvm_intsmooth.pipeline.phases import compose, dump_input, quantize_phases

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
    notes: tuple[str, ...] = ()  # what canonicalization changed (a dropped softmax)

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
        try:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
                zf.writestr("module.json", tvm.ir.save_json(self.mod))
                zf.writestr("meta.json", json.dumps(meta, indent=1))
            tmp.replace(path)  # never leave a half-written artifact under the final name
        except BaseException:
            tmp.unlink(missing_ok=True)  # a full disk leaves neither half a file nor a temporary
            raise
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
    imported = canonical_model(model)
    calibration = calibrate(imported, calibration_images, batch_size=batch_size, target=target)
    return quantize_calibrated(imported, calibration, input_dtype)


def quantize_calibrated(
    imported: ImportedModel,
    calibration: Calibration,
    input_dtype: str = "uint8",
    dump_ir: str | os.PathLike | None = None,
) -> QuantizedModel:
    """The quantize phase on an imported model whose ranges :func:`calibrate` measured."""
    imported = canonical_model(imported)
    dump_input(imported.frontend_mod or imported.mod, dump_ir)
    dump_input(imported.mod, dump_ir, "canonicalize")
    phases = quantize_phases(calibration.ranges, input_dtype)
    mod = compose(phases, dump_ir)(imported.mod)
    return QuantizedModel(
        mod,
        imported.input_shape,
        imported.num_classes,
        input_dtype,
        calibration.ranges,
        imported.source,
        imported.notes,
    )
