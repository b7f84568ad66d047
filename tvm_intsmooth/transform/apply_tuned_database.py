"""ApplyTunedDatabase: the tuned schedules of a MetaSchedule database, applied after fusion."""

from __future__ import annotations

import tvm

from tvm_intsmooth.schedule.database import ScheduleLookup


@tvm.transform.module_pass(opt_level=0, name="ApplyTunedDatabase")
class ApplyTunedDatabase:
    """Give every fused PrimFunc that ``lookup``'s database has a record for its tuned schedule
    (marked ``tirx.is_scheduled``, so later scheduling passes leave it alone); the lookup then
    tells which database it found and how many functions it scheduled."""

    def __init__(self, lookup: ScheduleLookup):
        self.lookup = lookup

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        return self.lookup.apply(mod)
