"""ConvertToBlockedInt8: run the integer graph's convolutions as blocked int8 kernels.

The quantized graph (``QuantizeToInteger``) is NCHW: ``nn.conv2d`` int8 (or integer pixels) x
int8 -> int32, then an elementwise requantization epilogue. This pass keeps activations in the
blocked NCHW16c layout (``blocked_kernels``) from the first convolution on: that convolution
reads the plain input and writes blocks, every later convolution reads and writes blocks, and
the elementwise ops between them (requantization, ReLU/Clip, residual adds) run on blocks with
their per-channel constants blocked at compile time, so FuseOps fuses each into its
convolution's PrimFunc. A blocked value goes back to NCHW only where a consumer needs it
(pooling, flatten, dense, the output). Weights are packed at compile time.

Exactness by construction (docs/integer_only.md):
- an int8 value whose range is within 0..127 (a requantization clamped at 0: ReLU) is the same
  byte as uint8, so it is emitted as uint8 and is the unsigned operand of the dot product as it is;
- a conv input that can be negative is shifted to uint8 ``x + 128`` (padded with the shifted
  zero, 128) and ``-128 * sum(w)`` per output channel is added to the accumulator, exactly;
- other inputs (the int16 noisy pixels of the first layer) keep their dtype and are multiplied
  in int32 (int16 x int8), never narrowed;
- every convolution's worst-case accumulator, fan-in x max|input| x 128, must fit int32, or the
  pass raises UnsupportedModelError.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax
from tvm.relax import op as R

from tvm_intsmooth.errors import UnsupportedModelError
from tvm_intsmooth.quantize.accumulator_bounds import accumulator_bound, fits
from tvm_intsmooth.schedule import blocked_kernels as K

ELEMENTWISE = {
    "relax.astype",
    "relax.add",
    "relax.subtract",
    "relax.multiply",
    "relax.right_shift",
    "relax.left_shift",
    "relax.clip",
    "relax.maximum",
    "relax.minimum",
    "relax.nn.relu",
}
RANGE_PRESERVING = {"relax.reshape", "relax.nn.max_pool2d", "relax.flatten", "relax.permute_dims"}


@dataclass(frozen=True)
class _Blocked:
    """A value held in the blocked layout: ``var`` is ``[B, C/16, H, W, 16]``."""

    var: relax.Var
    channels: int
    plain_dtype: str  # the dtype of the original NCHW value (uint8 lanes stand for int8 ones)


def _dtype_range(dtype: str) -> tuple[int, int]:
    info = np.iinfo(str(dtype))
    return int(info.min), int(info.max)


def _int_const(expr: relax.Expr) -> np.ndarray | None:
    if isinstance(expr, tvm.ir.GenericConst):
        value = expr.value.numpy()
        return value if value.dtype.kind in "iu" else None
    return None


def _prim_int(expr: relax.Expr) -> int | None:
    return int(expr.value) if isinstance(expr, tvm.tirx.IntImm) else None


def _is_nchw_int(expr: relax.Expr) -> bool:
    ty = expr.ty
    if not isinstance(ty, relax.TensorType) or ty.ndim != 4 or ty.shape is None:
        return False
    if not str(ty.dtype).startswith(("int", "uint")):
        return False
    return all(isinstance(d, tvm.tirx.IntImm) for d in list(ty.shape.values)[1:])


def _channels(expr: relax.Expr) -> int:
    return int(expr.ty.shape.values[1])


@relax.expr_functor.mutator
class _BlockedRewriter(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule):
        super().__init__(mod)
        self.blocked: dict[relax.Var, _Blocked] = {}
        self.flattened: dict[relax.Var, relax.VarBinding] = {}  # flattens of blocked values
        self.plain: dict[relax.Var, relax.Var] = {}
        self.ranges: dict[relax.Var, tuple[int, int]] = {}
        self.widened: dict[relax.Var, relax.Var] = {}  # an 8-bit value cast wider -> its block

    # -- ranges: what the graph's clamps say about each integer value -------------------------
    def _range(self, expr: relax.Expr) -> tuple[int, int]:
        if isinstance(expr, relax.Var) and expr in self.ranges:
            return self.ranges[expr]
        const = _int_const(expr)
        if const is not None and const.size:
            return int(const.min()), int(const.max())
        ty = expr.ty
        if isinstance(ty, relax.TensorType) and str(ty.dtype).startswith(("int", "uint")):
            return _dtype_range(ty.dtype)
        return -(2**63), 2**63 - 1

    def _value_range(self, var: relax.Var, call: relax.Call) -> tuple[int, int]:
        full = self._range(var)
        name = call.op.name
        if name == "relax.clip":
            lo, hi = self._range(call.args[0])
            clo, chi = _prim_int(call.args[1]), _prim_int(call.args[2])
            if clo is not None and chi is not None:
                lo, hi = min(max(lo, clo), chi), max(min(hi, chi), clo)
        elif name == "relax.nn.relu":
            lo, hi = self._range(call.args[0])
            lo, hi = max(lo, 0), max(hi, 0)
        elif name == "relax.astype" or name in RANGE_PRESERVING:
            lo, hi = self._range(call.args[0])
        else:
            return full
        if lo < full[0] or hi > full[1]:  # a narrowing cast that can wrap: no knowledge
            return full
        return lo, hi

    # -- bindings ------------------------------------------------------------------------------
    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        var, value = binding.var, binding.value
        if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op):
            self.ranges[var] = self._value_range(var, value)
            if isinstance(var, relax.DataflowVar) and value.op.name == "relax.matmul":
                dense = self._dense(var, value)
                if dense is not None:
                    self.set_var_remap(var, dense)
                    return
            if isinstance(var, relax.DataflowVar) and _is_nchw_int(var):
                blocked = self._rewrite(var, value)
                if blocked is not None:
                    self.blocked[var] = blocked
                    return
            if isinstance(var, relax.DataflowVar) and self._flattens_blocked(value):
                self.flattened[var] = binding  # emitted only if something but a dense reads it
                return
        for free in relax.analysis.free_vars(value):
            if free in self.flattened:  # a flatten read by something else than a dense
                flatten = self.flattened.pop(free)
                self._make_plain(flatten.value.args[0])  # it flattens the NCHW value
                super().visit_var_binding_(flatten)
            if free in self.blocked:
                self._make_plain(free)
        super().visit_var_binding_(binding)

    def _flattens_blocked(self, call: relax.Call) -> bool:
        """``call`` flattens a blocked [N, C, H, W] value to [N, C * H * W]."""
        if call.op.name not in ("relax.reshape", "relax.flatten"):
            return False
        data = call.args[0]
        if not (isinstance(data, relax.Var) and data in self.blocked):
            return False
        shape = call.ty.shape
        if shape is None or len(shape.values) != 2:
            return False
        c, h, w = (int(d) for d in data.ty.shape.values[1:])
        return isinstance(shape.values[1], tvm.tirx.IntImm) and int(shape.values[1]) == c * h * w

    def _emit(self, expr: relax.Expr, name: str) -> relax.Var:
        return self.builder_.emit(expr, name_hint=name)

    def _emit_te(self, fn, *args, name: str, **kwargs) -> relax.Var:
        call = self.builder_.call_te(fn, *args, primfunc_name_hint=fn.__name__, **kwargs)
        return self._emit(call, name)

    def _make_plain(self, var: relax.Var) -> relax.Var:
        if var not in self.plain:
            b = self.blocked[var]
            plain = self._emit_te(
                K.from_blocked, b.var, b.channels, b.plain_dtype, name=f"{var.name}_nchw"
            )
            self.plain[var] = plain
            self.set_var_remap(var, plain)
        return self.plain[var]

    def _as_blocked(self, expr: relax.Expr) -> _Blocked:
        if isinstance(expr, relax.Var) and expr in self.blocked:
            return self.blocked[expr]
        plain = self.visit_expr(expr)
        var = self._emit_te(K.to_blocked, plain, name="to_blocked")
        blocked = _Blocked(var, _channels(expr), str(expr.ty.dtype))
        if isinstance(expr, relax.Var):
            self.blocked[expr] = blocked
        return blocked

    def _rewrite(self, var: relax.Var, call: relax.Call) -> _Blocked | None:
        if call.op.name == "relax.nn.conv2d":
            return self._conv(var, call)
        if call.op.name in ELEMENTWISE:
            return self._elementwise(var, call)
        if call.op.name == "relax.nn.max_pool2d":
            return self._max_pool(var, call)
        if call.op.name == "relax.sum":
            return self._spatial_sum(var, call)
        return None

    # -- pooling on blocks ----------------------------------------------------------------------
    def _blocked_input(self, call: relax.Call) -> _Blocked | None:
        data = call.args[0]
        return self.blocked.get(data) if isinstance(data, relax.Var) else None

    def _max_pool(self, var: relax.Var, call: relax.Call) -> _Blocked | None:
        """Max pooling of a blocked value, kept blocked (no layout conversion around it)."""
        x, attrs = self._blocked_input(call), call.attrs
        if x is None or attrs.layout != "NCHW" or attrs.out_layout != "NCHW":
            return None
        out = self._emit_te(
            K.max_pool_blocked,
            x.var,
            [int(v) for v in attrs.pool_size],
            [int(v) for v in attrs.strides],
            [int(v) for v in attrs.padding],
            [int(v) for v in attrs.dilation],
            [int(d) for d in var.ty.shape.values[2:]],
            name=var.name,
        )
        return _Blocked(out, x.channels, str(var.ty.dtype))

    def _spatial_sum(self, var: relax.Var, call: relax.Call) -> _Blocked | None:
        """A sum over height and width (global average pooling) of a blocked value."""
        x = self._blocked_input(call)
        axis = call.attrs.axis
        if x is None or axis is None or not call.attrs.keepdims:
            return None
        if sorted(int(a) % 4 for a in axis) != [2, 3]:
            return None
        dtype = str(var.ty.dtype)
        # An 8-bit value widened for the sum is summed as it is (the sum widens each element):
        # its producer then writes bytes, and the widening cast is left dead.
        source = self.widened.get(call.args[0], x.var)
        out = self._emit_te(K.spatial_sum_blocked, source, dtype, name=var.name)
        return _Blocked(out, x.channels, dtype)

    # -- elementwise epilogues on blocks --------------------------------------------------------
    def _elementwise(self, var: relax.Var, call: relax.Call) -> _Blocked | None:
        shape = [int(d) for d in var.ty.shape.values[1:]]
        if not any(isinstance(a, relax.Var) and a in self.blocked for a in call.args):
            return None
        channels = shape[0]
        args = []
        for arg in call.args:
            if isinstance(arg, relax.Var):
                if arg not in self.blocked or [int(d) for d in arg.ty.shape.values[1:]] != shape:
                    return None
                args.append(self.blocked[arg].var)
            elif isinstance(arg, tvm.ir.GenericConst):
                const = _int_const(arg)
                if const is None or const.ndim > 4:
                    return None
                dims = (1,) * (4 - const.ndim) + const.shape
                spatial = zip(dims[1:], shape, strict=True)
                if dims[0] != 1 or any(d not in (1, s) for d, s in spatial):
                    return None
                blocked = K.block_const(const, channels)
                args.append(relax.const(blocked, str(const.dtype)))
            else:
                args.append(arg)
        dtype = str(var.ty.dtype)
        attrs = call.attrs
        if call.op.name == "relax.astype" and dtype == "int8":
            lo, hi = self.ranges[var]
            if lo >= 0 and hi <= 127:  # the same byte as uint8: the dot product's unsigned operand
                new = self._emit(R.astype(args[0], "uint8"), var.name)
                return _Blocked(new, channels, dtype)
        new = self._emit(relax.Call(call.op, args, attrs), var.name)
        source = self.blocked.get(call.args[0]) if call.op.name == "relax.astype" else None
        if source is not None and source.plain_dtype in ("int8", "uint8") and dtype == "int32":
            self.widened[var] = source.var
        return _Blocked(new, channels, dtype)

    # -- convolutions -----------------------------------------------------------------------------
    def _conv(self, var: relax.Var, call: relax.Call) -> _Blocked | None:
        attrs = call.attrs
        weight = _int_const(call.args[1])
        data = call.args[0]
        if (
            weight is None
            or weight.dtype != np.int8
            or attrs.data_layout != "NCHW"
            or attrs.kernel_layout != "OIHW"
            or str(attrs.out_dtype) != "int32"
            or not _is_nchw_int(data)
        ):
            return None
        strides = tuple(int(v) for v in attrs.strides)
        padding = tuple(int(v) for v in attrs.padding)
        dilation = tuple(int(v) for v in attrs.dilation)
        groups = int(attrs.groups)
        out_channels, cin_per_group = weight.shape[:2]
        depthwise = groups > 1 and cin_per_group == 1 and groups == out_channels
        if groups != 1 and not depthwise:
            return None
        name = var.name
        lo, hi = self._range(data)
        fan_in = int(np.prod(weight.shape[1:]))
        data_is_blocked = isinstance(data, relax.Var) and data in self.blocked
        if not data_is_blocked and str(data.ty.dtype) in ("int8", "uint8") and cin_per_group > 4:
            self._as_blocked(data)  # 8-bit activations (e.g. after pooling): blocked by 16
            data_is_blocked = True
        if depthwise:
            x = self._as_blocked(data)
            self._check_accumulator(name, fan_in, max(-lo, hi))
            packed = relax.const(K.pack_depthwise_weight(weight), "int8")
            out = self._emit_te(
                K.conv_depthwise_blocked, x.var, packed, strides, padding, dilation, name=name
            )
            return _Blocked(out, out_channels, "int32")
        if not data_is_blocked and str(data.ty.dtype) == "int16" and dilation == (1, 1):
            # the network's int16 noisy pixels: rows of pixels with their channels side by
            # side, each kernel row's taps one contiguous run of int16 pairs
            self._check_accumulator(name, fan_in, max(-lo, hi))
            return self._first_conv_rows(var, data, weight, strides, padding, max(-lo, hi))
        if not data_is_blocked:  # the network input: kept in its dtype, blocked by 2 channels
            self._check_accumulator(name, fan_in, max(-lo, hi))
            block = K.input_block(cin_per_group)
            x = self._emit_te(K.to_blocked, self.visit_expr(data), block, name=f"{name}_in")
            packed = relax.const(K.pack_input_conv_weight(weight), "int8")
            out = self._emit_te(
                K.conv_blocked, x, packed, strides, padding, dilation, max(-lo, hi), name=name
            )
            return _Blocked(out, out_channels, "int32")
        return self._conv_8bit(self.blocked[data], (lo, hi), weight, attrs, name)

    def _first_conv_rows(self, var, data, weight, strides, padding, data_max) -> _Blocked:
        """The first (int16) conv in the rows layout (:func:`blocked_kernels.conv_rows`)."""
        out_channels, channels, _, kernel_w = weight.shape
        out_w = int(var.ty.shape.values[3])
        padded_w = int(data.ty.shape.values[3]) + padding[1] + padding[3]
        extra = K.rows_extra(channels, kernel_w, strides[1], padded_w, out_w)
        rows = self._emit_te(
            K.to_rows, self.visit_expr(data), padding, extra, name=f"{var.name}_rows"
        )
        packed = relax.const(K.pack_rows_weight(weight), "int8")
        out = self._emit_te(
            K.conv_rows, rows, packed, strides, channels, out_w, data_max, name=var.name
        )
        return _Blocked(out, out_channels, "int32")

    def _conv_8bit(
        self, x: _Blocked, bounds, weight: np.ndarray, attrs, name: str, fan_in: int | None = None
    ) -> _Blocked:
        """A conv of blocked 8-bit data: uint8 as it is, or signed shifted by +128.
        ``fan_in``: the real fan-in where ``weight`` has zero rows for padded lanes."""
        strides = tuple(int(v) for v in attrs.strides)
        padding = tuple(int(v) for v in attrs.padding)
        dilation = tuple(int(v) for v in attrs.dilation)
        lo, hi = bounds
        fan_in = int(np.prod(weight.shape[1:])) if fan_in is None else fan_in
        out_channels = weight.shape[0]
        packed = relax.const(K.pack_conv_weight(weight), "int8")
        dtype = str(x.var.ty.dtype)
        if dtype == "int8" and lo >= 0:
            x = _Blocked(self._emit(R.astype(x.var, "uint8"), f"{name}_u8"), x.channels, "int8")
            dtype = "uint8"
        if dtype == "int8":  # can be negative: shift by +128, exactly compensated
            self._check_accumulator(name, fan_in, 255)
            shifted = self._emit_te(K.shift_to_uint8, x.var, padding, name=f"{name}_shift")
            acc = self._emit_te(
                K.conv_blocked, shifted, packed, strides, (0, 0, 0, 0), dilation, 255, name=name
            )
            fix = relax.const(K.compensation(weight), "int32")
            return _Blocked(self._emit(R.add(acc, fix), f"{name}_fix"), out_channels, "int32")
        self._check_accumulator(name, fan_in, max(-lo, hi))
        out = self._emit_te(
            K.conv_blocked, x.var, packed, strides, padding, dilation, max(-lo, hi), name=name
        )
        return _Blocked(out, out_channels, "int32")

    # -- the dense layer, as a 1x1 convolution ---------------------------------------------------
    def _dense(self, var: relax.Var, call: relax.Call) -> relax.Var | None:
        """``[N, F] @ [F, O]`` with 8-bit activations: a blocked 1x1 conv, back to ``[N, O]``."""
        data, weight = call.args[0], _int_const(call.args[1])
        if (
            weight is None
            or weight.dtype != np.int8
            or weight.ndim != 2
            or str(call.attrs.out_dtype) != "int32"
            or len(data.ty.shape.values) != 2
            or str(data.ty.dtype) not in ("int8", "uint8")
            or not isinstance(data.ty.shape.values[1], tvm.tirx.IntImm)
        ):
            return None
        name = var.name
        batch, features = data.ty.shape.values[0], int(data.ty.shape.values[1])
        fan_in = features
        if isinstance(data, relax.Var) and data in self.flattened:
            x, weight = self._blocked_features(data, weight, name)
        else:
            x4 = self._emit(R.reshape(self.visit_expr(data), [batch, features, 1, 1]), f"{name}_4d")
            x = _Blocked(self._emit_te(K.to_blocked, x4, name=f"{name}_blocked"), features, "")
        conv = R.nn.conv2d(
            relax.Var("x", relax.TensorType([batch, x.channels, 1, 1], str(data.ty.dtype))),
            relax.const(weight.T[:, :, None, None].copy()),
            out_dtype="int32",
        )
        acc = self._conv_8bit(
            _Blocked(x.var, x.channels, str(data.ty.dtype)),
            self._range(data),
            weight.T[:, :, None, None],
            conv.attrs,
            name,
            fan_in,
        )
        plain = self._emit_te(K.from_blocked, acc.var, weight.shape[1], "int32", name=f"{name}_4d")
        return self._emit(R.reshape(plain, [batch, weight.shape[1]]), name)

    def _blocked_features(
        self, flat: relax.Var, weight: np.ndarray, name: str
    ) -> tuple[_Blocked, np.ndarray]:
        """The dense layer's input read from the blocked value it flattens, with no layout
        conversion: ``[N, C/16, H, W, 16]`` viewed as ``[N, C/16 * H * W, 1, 1, 16]``, whose
        feature ``((cb * H + y) * W + x) * 16 + lane`` is the flattened feature
        ``(cb * 16 + lane) * H * W + y * W + x``; the weight rows are permuted to match
        (zero rows for padded lanes)."""
        x = self.blocked[self.flattened[flat].value.args[0]]
        batch = flat.ty.shape.values[0]
        c, h, w = (int(d) for d in self.flattened[flat].value.args[0].ty.shape.values[1:])
        cb = K.blocks(c)
        block, y, z, lane = np.meshgrid(
            np.arange(cb), np.arange(h), np.arange(w), np.arange(K.BLOCK), indexing="ij"
        )  # the blocked features in their order
        channel = (block * K.BLOCK + lane).reshape(-1)
        real = channel < c
        plain = (channel * h * w + (y * w + z).reshape(-1))[real]
        permuted = np.zeros((cb * K.BLOCK * h * w, weight.shape[1]), weight.dtype)
        permuted[real] = weight[plain]
        view = self._emit(R.reshape(x.var, [batch, cb * h * w, 1, 1, K.BLOCK]), f"{name}_features")
        return _Blocked(view, cb * K.BLOCK * h * w, x.plain_dtype), permuted

    @staticmethod
    def _check_accumulator(name: str, fan_in: int, input_max_abs: int) -> None:
        bound = accumulator_bound(fan_in, input_max_abs)  # any partial sum, any blocking
        if not fits(bound, "int32"):
            raise UnsupportedModelError(
                f"ConvertToBlockedInt8: convolution {name!r} sums {fan_in} products of inputs "
                f"up to {input_max_abs} in magnitude and int8 weights; its worst case "
                f"{bound} does not fit the int32 accumulator. Requantize its input to int8 "
                "(or narrow the input range) before this layer."
            )


@tvm.transform.module_pass(opt_level=0, name="ConvertToBlockedInt8")
class ConvertToBlockedInt8:
    """Rewrite every Relax function's integer convolutions into blocked NCHW16c int8 kernels."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        rewriter = _BlockedRewriter(mod)
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                rewriter.builder_.update_func(gv, rewriter.visit_expr(func))
        return rewriter.builder_.get()
