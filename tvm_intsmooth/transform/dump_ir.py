"""DumpIR: a pass that writes the module's TVMScript to a file and returns it unchanged."""

from __future__ import annotations

import os
from pathlib import Path

import tvm


@tvm.transform.module_pass(opt_level=0, name="DumpIR")
class DumpIR:
    """Write ``mod.script()`` to ``folder/NN_name.py`` (the MLC-LLM habit of dumping between
    phases, to see what each one did)."""

    def __init__(self, folder: str | os.PathLike, index: int, name: str):
        self.path = Path(folder) / f"{index:02d}_{name}.py"

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(mod.script(show_meta=False))
        return mod
