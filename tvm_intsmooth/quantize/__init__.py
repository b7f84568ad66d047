"""Quantize: how each operator becomes integer-only (the rewrite registry over value states),
fixed-point requantization and the accumulator bounds. The QuantizeToInteger pass that applies it
is in :mod:`tvm_intsmooth.transform`, calibration and ``quantize_static`` in
:mod:`tvm_intsmooth.pipeline`."""
