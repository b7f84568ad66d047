"""Per-operator rewrite rules, registered in ``rewriter.HANDLERS`` on import."""

from tvm_intsmooth.quantize.ops import (  # noqa: F401
    activation,
    conv,
    dense,
    elementwise,
    pool,
    qdq,
    shape,
)
