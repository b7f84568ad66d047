"""What an importer hands to the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from tvm import ir


@dataclass
class ImportedModel:
    """A float Relax classifier with what the rest of the pipeline needs.

    ``mod`` is the frontend's module (``canonical`` False) or, once the pipeline's
    ``canonicalize`` phase ran, the canonical one (``frontend_mod`` then keeps the frontend's);
    ``notes`` say what canonicalization changed that a user should know (a dropped softmax).
    """

    mod: ir.IRModule
    params: dict[str, np.ndarray]
    input_name: str
    input_shape: tuple[int, ...]  # (C, H, W) or (F,): the sample shape without the batch dim
    layout: str  # "NCHW" for images, "NC" for flat inputs
    output_name: str
    num_classes: int
    source: str = ""
    onnx_model: onnx.ModelProto | None = field(default=None, repr=False)
    canonical: bool = False
    frontend_mod: ir.IRModule | None = field(default=None, repr=False)
    notes: tuple[str, ...] = ()
