"""Per-operator rewrite rules, registered in ``rewriter.HANDLERS`` on import."""

from . import conv, dense, elementwise, pool, qdq, shape  # noqa: F401
