"""DropRepeatedTileConfigs keeps an AMX tile configuration block only where the configuration
changes within a sample loop's body (and after anything that may have loaded another)."""

from __future__ import annotations

import tvm
from tvm import tirx
from tvm.s_tir import SBlock, SBlockRealize

from tvm_intsmooth.schedule.intrinsics.amx import config_block
from tvm_intsmooth.transform import DropRepeatedTileConfigs


def kernel(k: int) -> tirx.Stmt:
    """A stand-in for one kernel's body in the loop."""
    return tirx.Evaluate(tirx.const(k, "int32"))


def func(body: list[tirx.Stmt], kind=tirx.ForKind.PARALLEL) -> tirx.PrimFunc:
    sample = tirx.Var("sample", "int32")
    loop = tirx.For(sample, tirx.const(0, "int32"), tirx.const(4, "int32"), kind,
                    tirx.SeqStmt(body))  # fmt: skip
    root = SBlock([], [], [], "root", loop, None, [], [], {})
    return tirx.PrimFunc([], SBlockRealize([], True, root))


def nested(*body: tirx.Stmt) -> tirx.Stmt:
    r = tirx.Var("r", "int32")
    return tirx.For(r, tirx.const(0, "int32"), tirx.const(2, "int32"), tirx.ForKind.SERIAL,
                    tirx.SeqStmt(list(body)))  # fmt: skip


def numbered(config: SBlockRealize, k: int) -> SBlockRealize:
    """The config block renamed as FuseTIR renames the blocks of the kernels it merges."""
    b = config.block
    block = SBlock(b.iter_vars, b.reads, b.writes, f"{b.name_hint}{k}", b.body, b.init,
                   b.alloc_buffers, b.match_buffers, b.annotations)  # fmt: skip
    return SBlockRealize(config.iter_values, config.predicate, block)


def run(f: tirx.PrimFunc) -> tirx.PrimFunc:
    return DropRepeatedTileConfigs()(tvm.IRModule({"main": f}))["main"]


def test_repeats_are_dropped_and_changes_kept():
    wide, narrow = (16, 3), (8, 3)
    before = func([
        config_block(*wide), kernel(1),
        tirx.SeqStmt([numbered(config_block(*wide), 1), kernel(2)]),  # nested by FuseSampleLoops
        numbered(config_block(*narrow), 2), kernel(3),
        numbered(config_block(*wide), 3), kernel(4),
        nested(config_block(*narrow), kernel(5)),  # loads one deeper: the next one stays
        numbered(config_block(*wide), 5), kernel(6), numbered(config_block(*wide), 6), kernel(7),
    ])  # fmt: skip
    expected = func([
        config_block(*wide), kernel(1), kernel(2),
        numbered(config_block(*narrow), 2), kernel(3),
        numbered(config_block(*wide), 3), kernel(4),
        nested(config_block(*narrow), kernel(5)),
        numbered(config_block(*wide), 5), kernel(6), kernel(7),
    ])  # fmt: skip
    tvm.ir.assert_structural_equal(run(before), expected, map_free_vars=True)


def test_nothing_repeated_and_serial_loops_are_left_alone():
    once = func([config_block(16, 3), kernel(1), config_block(8, 3), kernel(2)])
    assert run(once).same_as(once)
    serial = func([config_block(16, 3), kernel(1), config_block(16, 3)], tirx.ForKind.SERIAL)
    assert run(serial).same_as(serial)
