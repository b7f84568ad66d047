"""Per-operator rewrite rules, registered in ``rewriter.HANDLERS`` on import."""

from tvm_intsmooth.quantize.ops import conv, dense, elementwise, pool, qdq, shape  # noqa: F401
