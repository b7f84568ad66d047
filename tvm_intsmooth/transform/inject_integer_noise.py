"""InjectIntegerNoise: integer classifier -> (pixels, seed, counter) -> logits of B noisy copies.

Before: ``main(x: int16[batch, C, H, W]) -> int32[batch, K]`` (QuantizeToInteger with
``input_dtype="int16"``). After::

    main(pixels: uint8[1, C, H, W], seed: int64[2], counter: int64[3]) -> int32[B, K]
        noise  = call_tir(rounded_gaussian_noise, [seed, counter])      # int16[B, C*H*W]
        noisy  = pixels + reshape(noise)        # int16[B, C, H, W], clip(.., 0, 255) if asked
        logits = classifier(noisy)

``seed`` holds the 64-bit seed as (low, high) 32-bit words, ``counter`` (stream low, stream high,
first sample index); sample ``counter[2] + b`` of the batch draws its own Philox counters, so any
split of a sample range into batches draws the same noise (docs/soundness.md, sections 3 and 4).
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax import op as R

from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.quantize.accumulator_bounds import Interval, check_accumulator_bounds
from tvm_intsmooth.smoothing.noise_sampler import noise_primfunc
from tvm_intsmooth.smoothing.noise_table import rounded_gaussian_table
from tvm_intsmooth.transform.wrap_main import wrap_main

NOISE_KINDS = ("rounded_gaussian",)
CLIP_POLICIES = ("none", "clip")
PIXEL_MAX = 255
INT16_MAX = 2**15 - 1


@tvm.transform.module_pass(opt_level=0, name="InjectIntegerNoise")
class InjectIntegerNoise:
    """Draw B noisy copies of the input inside the graph, in integer arithmetic only.

    Args:
        sigma: noise level in [0, 1] pixel units (Cohen et al.'s sigma).
        batch: number of noisy samples B per call.
        noise: noise kind; only "rounded_gaussian" (docs/soundness.md, section 2) is certified.
        clip: "none" (the default) passes noisy pixels on unclipped, as Cohen et al. smooth and
            as noise-augmented training sees them; "clip" clamps them to 0..255. Either is part
            of the base classifier, so either certificate is sound (docs/soundness.md, section 1).
        bits: width of the uniforms compared with the thresholds (64: TV bound negligible).
    """

    def __init__(
        self,
        sigma: float,
        batch: int,
        noise: str = "rounded_gaussian",
        clip: str = "none",
        bits: int = 64,
    ):
        if noise not in NOISE_KINDS:
            raise IntSmoothError(
                f"noise kind {noise!r} is not supported; use one of {NOISE_KINDS} (the discrete "
                "Gaussian is left out until its certificate is derived)"
            )
        if clip not in CLIP_POLICIES:
            raise IntSmoothError(f"clip policy {clip!r}: use one of {CLIP_POLICIES}")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise IntSmoothError(f"batch must be a positive integer, got {batch!r}")
        self.table = rounded_gaussian_table(sigma, bits=bits)
        if PIXEL_MAX + self.table.K > INT16_MAX:
            raise IntSmoothError(
                f"sigma {sigma}: noisy pixels reach {PIXEL_MAX + self.table.K}, beyond int16; "
                "use a smaller sigma"
            )
        self.batch = batch
        self.clip = clip

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        classifier = mod["main"]
        (param,) = classifier.params
        if param.ty.dtype != "int16":
            raise IntSmoothError(
                f"InjectIntegerNoise needs an int16-input classifier (got {param.ty.dtype}); "
                "quantize with input_dtype='int16'"
            )
        shape = [int(d) for d in list(param.ty.shape)[1:]]
        coords = int(np.prod(shape))
        batch_var = param.ty.shape[0]
        if not isinstance(batch_var, tvm.tirx.Var):
            raise IntSmoothError("InjectIntegerNoise needs a classifier with a symbolic batch")
        # Opaque: fusing the Philox rounds into their consumers makes TIR simplification explode.
        noise_func = noise_primfunc(self.table, self.batch, coords).with_attr("op_pattern", 8)
        pixels = relax.Var("pixels", relax.TensorType([1, *shape], "uint8"))
        seed = relax.Var("seed", relax.TensorType([2], "int64"))
        counter = relax.Var("counter", relax.TensorType([3], "int64"))

        def body(bb: relax.BlockBuilder, inner: tvm.ir.GlobalVar) -> relax.Expr:
            noise_gv = bb.add_func(noise_func, "intsmooth_rounded_gaussian_noise")
            noise = bb.emit(
                R.call_tir(
                    noise_gv,
                    [seed, counter],
                    out_ty=relax.TensorType([self.batch, coords], "int16"),
                ),
                "noise",
            )
            noise = bb.emit(R.reshape(noise, [self.batch, *shape]))
            noisy = bb.emit(R.add(bb.emit(R.astype(pixels, "int16")), noise), "noisy")
            if self.clip == "clip":
                noisy = bb.emit(R.clip(noisy, 0, PIXEL_MAX), "noisy_clipped")
            return bb.emit(relax.Call(inner, [noisy]), "logits")

        out = wrap_main(mod, [pixels, seed, counter], body, {batch_var.name: self.batch})
        k = self.table.K
        check_accumulator_bounds(
            out["main"],
            {"pixels": Interval(0, PIXEL_MAX)},
            {"intsmooth_rounded_gaussian_noise": Interval(-k, k)},
            what=f"the smoothed classifier (sigma {self.table.sigma}, noise in [-{k}, {k}])",
            advice="Compile with clip='clip' (noisy pixels clamped to 0..255), a smaller sigma, "
            "or a model whose first layer has a smaller fan-in (e.g. a convolution or a "
            "downsampling layer before a dense one).",
        )
        return out
