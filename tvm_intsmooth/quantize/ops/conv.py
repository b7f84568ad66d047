"""nn.conv2d: int8 (or integer pixels) x int8 -> int32, per-output-channel scale."""

from __future__ import annotations

import numpy as np
from tvm import relax
from tvm.relax import op as R

from tvm_intsmooth.quantize.ops.weights import const_weight, quantize_weight
from tvm_intsmooth.quantize.rewriter import RewriteContext, handles, sample_shape
from tvm_intsmooth.quantize.states import Acc, Affine, Const, State


def conv_attrs(call: relax.Call) -> dict:
    attrs = call.attrs
    return {
        "strides": tuple(int(v) for v in attrs.strides),
        "padding": tuple(int(v) for v in attrs.padding),
        "dilation": tuple(int(v) for v in attrs.dilation),
        "groups": int(attrs.groups),
    }


def _conv_offset(image: np.ndarray, weight: np.ndarray, attrs: dict) -> np.ndarray:
    """The float convolution (zero padding) of one C x H x W image, as [1, O, Ho, Wo]: the
    offset that an affine input's constant term adds after the convolution. Tap by tap, so that
    it shares no code with the numpy interpreter the tests compare against."""
    (sh, sw), (dh, dw), groups = attrs["strides"], attrs["dilation"], attrs["groups"]
    top, left, bottom, right = attrs["padding"]
    channels, height, width = image.shape
    padded = np.zeros((channels, height + top + bottom, width + left + right))
    padded[:, top : top + height, left : left + width] = image
    out_ch, cin_g, kh, kw = weight.shape
    out_h = (padded.shape[1] - dh * (kh - 1) - 1) // sh + 1
    out_w = (padded.shape[2] - dw * (kw - 1) - 1) // sw + 1
    out_g = out_ch // groups
    out = np.zeros((out_ch, out_h, out_w))
    for y in range(kh):
        for x in range(kw):
            tap = padded[:, y * dh :: sh, x * dw :: sw][:, :out_h, :out_w]
            for g in range(groups):
                w = weight[g * out_g : (g + 1) * out_g, :, y, x].astype(np.float64)
                out[g * out_g : (g + 1) * out_g] += np.tensordot(
                    w, tap[g * cin_g : (g + 1) * cin_g], axes=1
                )
    return out[None]


def _fold_affine_input(state: Affine, weight: np.ndarray, attrs: dict, sample_shape):
    """Fold value = a * pixels + c into the weights and a (position-dependent) bias."""
    channels = sample_shape[0]
    a = np.broadcast_to(state.a, sample_shape)
    per_channel = a.reshape(channels, -1)
    if not np.all(per_channel == per_channel[:, :1]):
        return None
    a = per_channel[:, 0]
    out_ch, cin_g = weight.shape[:2]
    out_g = out_ch // attrs["groups"]
    in_index = (np.arange(out_ch)[:, None] // out_g) * cin_g + np.arange(cin_g)[None, :]
    folded = weight * a[in_index][:, :, None, None]
    c_image = np.broadcast_to(state.c, sample_shape).astype(np.float64)
    offset = _conv_offset(c_image, weight, attrs)  # zero padding, as in the float model
    flat = offset.reshape(out_ch, -1)
    if np.allclose(flat, flat[:, :1], rtol=0, atol=1e-12 * (1 + np.abs(flat).max())):
        offset = flat[:, 0].reshape(1, out_ch, 1, 1)
    return folded, offset


@handles("relax.nn.conv2d")
def conv2d(ctx: RewriteContext, call: relax.Call, args: list[State], name: str) -> State:
    data, weight = args
    if not isinstance(weight, Const):
        raise ctx.fail(call, "has a weight computed at run time; only constants are supported.")
    if call.attrs.data_layout != "NCHW" or call.attrs.kernel_layout != "OIHW":
        raise ctx.fail(call, "is not NCHW/OIHW.")
    attrs = conv_attrs(call)
    if isinstance(data, Affine):
        folded = _fold_affine_input(
            data, weight.value.astype(np.float64), attrs, sample_shape(data.expr)
        )
        if folded is None:
            raise ctx.fail(call, "follows an input scaling that varies within a channel.")
        w_eff, offset = folded
        q, w_scale = quantize_weight(w_eff, 0)
        acc = ctx.emit(R.nn.conv2d(data.expr, relax.const(q, "int8"), out_dtype="int32", **attrs))
        bias = np.round(offset / w_scale.reshape(1, -1, 1, 1)).astype(np.int32)
        acc = ctx.emit(R.add(acc, relax.const(bias, "int32")), name)
        return Acc(acc, w_scale, name)
    x = ctx.materialize(data, call)
    q, w_scale = const_weight(weight, 0)
    acc = ctx.emit(R.nn.conv2d(x.expr, relax.const(q, "int8"), out_dtype="int32", **attrs), name)
    return Acc(acc, x.scale * w_scale, name)
