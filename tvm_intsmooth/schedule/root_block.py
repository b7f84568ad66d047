"""The root block of a PrimFunc in block form: its top-level statements, read and replaced.

A scheduled kernel holds its loop nests in one root block. The rewrites that run after
scheduling (FuseSampleLoops, DropRepeatedTileConfigs, the AMX schedule's tile configuration)
change those top-level statements and rebuild the function around them, the root's buffers,
annotations and the function's attributes kept.
"""

from __future__ import annotations

from collections.abc import Callable

from tvm import tirx
from tvm.s_tir import SBlock, SBlockRealize


def root_block(func: tirx.PrimFunc) -> SBlock | None:
    """The root block of ``func``, or None where its body is not one (a hand-written kernel)."""
    body = func.body
    return body.block if isinstance(body, SBlockRealize) else None


def top_level(func: tirx.PrimFunc) -> list[tirx.Stmt]:
    """The statements of ``func``'s root block, in order (``func`` must have one)."""
    body = root_block(func).body
    return list(body.seq) if isinstance(body, tirx.SeqStmt) else [body]


def with_top_level(func: tirx.PrimFunc, statements: list[tirx.Stmt]) -> tirx.PrimFunc:
    """``func`` with its root block's statements replaced by ``statements``."""
    root = root_block(func)
    body = tirx.SeqStmt(statements) if len(statements) > 1 else statements[0]
    block = SBlock([], [], [], root.name_hint, body, None, list(root.alloc_buffers),
                   list(root.match_buffers), root.annotations)  # fmt: skip
    return tirx.PrimFunc(func.params, SBlockRealize([], True, block), func.ret_type, func.attrs)


def with_parallel_bodies(
    func: tirx.PrimFunc, rewrite: Callable[[tirx.Stmt], tirx.Stmt]
) -> tirx.PrimFunc:
    """``func`` with ``rewrite`` applied to the body of each top-level parallel loop of its
    root block; ``func`` itself where it has no root block or no body changes."""
    if root_block(func) is None:
        return func
    loops = top_level(func)
    new = []
    for loop in loops:
        if isinstance(loop, tirx.For) and loop.kind == tirx.ForKind.PARALLEL:
            body = rewrite(loop.body)
            if not body.same_as(loop.body):
                loop = tirx.For(loop.loop_var, loop.min, loop.extent, loop.kind, body,
                                annotations=loop.annotations)  # fmt: skip
        new.append(loop)
    if all(a.same_as(b) for a, b in zip(new, loops, strict=True)):
        return func
    return with_top_level(func, new)
