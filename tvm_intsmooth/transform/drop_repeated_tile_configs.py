"""DropRepeatedTileConfigs: one AMX tile configuration per change of configuration in a sample.

Every AMX conv kernel loads its tile configuration at the start of each iteration of its
parallel loop (``amx_tile_config``: the OS permission request and ``ldtilecfg``, about 0.12 us).
Once FuseSampleLoops has put a run of kernels into one loop over the samples, consecutive
kernels of the same tile shape load the same configuration again and again: 17 loads per sample
for the ResNet-20, of which 15 repeat the one before. The configuration is the thread's own state,
kept until the next ``ldtilecfg``, and the loop body runs on one thread from start to end, so a
block that loads the configuration already loaded earlier in the same body, with no other
configuration in between, does nothing: it is dropped.

Only the statements directly in the body of a top-level parallel loop are compared (nested
sequences of them included). A statement that holds a configuration block deeper (inside a loop
of its own) ends the comparison: after it, the next configuration block is kept.
"""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import tirx
from tvm.s_tir import SBlock, SBlockRealize

from tvm_intsmooth.schedule.root_block import with_parallel_bodies


def _is_config_block(block: SBlock) -> bool:
    # imported here, not at the top: importing the intrinsics package parses every intrinsic
    # (1-2 s), which a process that only loads artifacts (or a tuning worker) must not pay
    from tvm_intsmooth.schedule.intrinsics.amx import CONFIG_BLOCK

    return block.name_hint.startswith(CONFIG_BLOCK)  # FuseTIR appends a number


def _is_config(stmt: tirx.Stmt) -> bool:
    return isinstance(stmt, SBlockRealize) and _is_config_block(stmt.block)


def _config(stmt: tirx.Stmt) -> tuple[int, ...]:
    """The configuration a config block loads: the words it stores, in order."""
    words: list[int] = []

    def visit(node) -> None:
        if isinstance(node, tirx.BufferStore) and isinstance(node.value, tirx.IntImm):
            words.append(int(node.value))

    tvm_ffi.structural_walk(stmt, visit, order="pre")
    return tuple(words)


def _holds_config(stmt: tirx.Stmt) -> bool:
    found = []

    def visit(node) -> None:
        if isinstance(node, SBlock) and _is_config_block(node):
            found.append(node)

    tvm_ffi.structural_walk(stmt, visit, order="pre")
    return bool(found)


def _flat(stmt: tirx.Stmt) -> list[tirx.Stmt]:
    if isinstance(stmt, tirx.SeqStmt):
        return [s for part in stmt.seq for s in _flat(part)]
    return [stmt]


def drop_repeated_configs(body: tirx.Stmt) -> tirx.Stmt:
    """``body`` (a parallel loop's) without the configuration blocks that repeat the last one
    loaded before them in it."""
    kept, last, dropped = [], None, False
    for stmt in _flat(body):
        if _is_config(stmt):
            config = _config(stmt)
            if config == last:
                dropped = True
                continue
            last = config
        elif _holds_config(stmt):
            last = None
        kept.append(stmt)
    if not dropped:
        return body
    return tirx.SeqStmt(kept) if len(kept) > 1 else kept[0]


def drop_in_func(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """``func`` (s_tir form) with :func:`drop_repeated_configs` applied to the body of each
    top-level parallel loop of its root block."""
    return with_parallel_bodies(func, drop_repeated_configs)


@tvm.transform.module_pass(opt_level=0, name="DropRepeatedTileConfigs")
class DropRepeatedTileConfigs:
    """Drop, in every PrimFunc's top-level parallel loops, the AMX tile configuration blocks
    that load the configuration already loaded before them in the same loop body
    (:func:`drop_in_func`; run after FuseSampleLoops, which puts several AMX kernels in one
    sample loop)."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        out = tvm.IRModule({gv: f for gv, f in mod.functions_items()}, attrs=mod.attrs)
        for gv, func in mod.functions_items():
            if isinstance(func, tirx.PrimFunc):
                out[gv] = drop_in_func(func)
        return out
