"""What the quantizer knows about each value of the float graph while it rewrites it.

Every float tensor is represented by one of:

- ``Const``: known at compile time (weights, biases, normalization constants); ``q``/``qscale``
  keep the exact integers and scales of a dequantized QDQ weight.
- ``Affine``: ``value = a * pixels + c`` with ``pixels`` the integer input; the normalization in
  front of the first layer stays in this form and is folded into that layer.
- ``Int8``: ``value ~= scale * q`` with ``q`` an int8 tensor (symmetric, zero point 0).
- ``Acc``: ``value ~= scale[c] * acc`` with ``acc`` an int32 accumulator, ``scale`` per channel
  (axis 1) or scalar; optional clip bounds (ReLU/Clip) not yet applied, and the name of the float
  value whose calibrated range decides the int8 scale when it is materialized.
- ``Unary``: ``value = fn(src)`` elementwise for an int8 ``src`` (sigmoid, tanh, x * sigmoid(x),
  and scalar arithmetic on them): pending until a consumer needs it, then one 256-entry int8
  lookup table built at compile time (``fn`` evaluated in float64 on the 256 values of ``src``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tvm import relax


@dataclass
class Const:
    value: np.ndarray
    q: np.ndarray | None = None
    qscale: np.ndarray | None = None  # broadcast to q.shape


@dataclass
class Affine:
    expr: relax.Expr
    a: np.ndarray  # broadcastable to the sample shape (no batch axis)
    c: np.ndarray


@dataclass
class Int8:
    expr: relax.Expr
    scale: float


@dataclass
class Acc:
    expr: relax.Expr
    scale: np.ndarray  # shape () or (channels,)
    range_key: str
    lo: float | None = None
    hi: float | None = None
    cached: Int8 | None = None  # the int8 materialization, shared by all consumers


@dataclass
class Unary:
    src: Int8
    fn: Callable[[np.ndarray], np.ndarray]  # float64 -> float64, elementwise
    range_key: str
    cached: Int8 | None = None  # the table lookup, shared by all consumers


State = Const | Affine | Int8 | Acc | Unary
