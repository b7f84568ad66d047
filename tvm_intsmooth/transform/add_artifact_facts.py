"""AddArtifactFacts: compile what a certificate depends on into the module itself."""

from __future__ import annotations

import tvm
from tvm import relax

from tvm_intsmooth.smoothing.artifact_facts import FACTS_FUNCTION, ArtifactFacts


@tvm.transform.module_pass(opt_level=0, name="AddArtifactFacts")
class AddArtifactFacts:
    """Add ``intsmooth_facts() -> int64[F]`` returning ``facts`` (a constant), which the loader
    compares with meta.json (:mod:`tvm_intsmooth.smoothing.artifact_facts`)."""

    def __init__(self, facts: ArtifactFacts):
        self.facts = facts

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        bb = relax.BlockBuilder(mod)
        with bb.function(FACTS_FUNCTION, []):
            bb.emit_func_output(relax.const(self.facts.to_array(), "int64"))
        return bb.get()
