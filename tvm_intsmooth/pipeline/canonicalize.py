"""The ``canonicalize`` phase on an imported model, once, before calibration and quantization.

Calibration keys its ranges by the variable names of the module it runs, and QuantizeToInteger
looks them up in the module it rewrites: both must see the same canonical module.
:func:`canonical_model` imports a model (any :data:`~tvm_intsmooth.importer.ModelLike`), runs
the phase, checks the result and returns an :class:`ImportedModel` marked ``canonical`` that
both take as it is. The phase is deterministic, so a raw module given to ``calibrate`` and then
to the registered pipeline is canonicalized to the same names twice.
"""

from __future__ import annotations

import dataclasses

from tvm_intsmooth.importer import ImportedModel, ModelLike, check_canonical, import_model
from tvm_intsmooth.pipeline.phases import canonicalize_phases, compose
from tvm_intsmooth.transform.drop_monotone_head import ATTR as DROPPED_HEAD


def canonical_model(model: ModelLike) -> ImportedModel:
    """``model`` imported and canonicalized (as is if it already is)."""
    imported = import_model(model)
    if imported.canonical:
        return imported
    mod = compose(canonicalize_phases())(imported.mod)
    check_canonical(mod, imported.source)
    notes = list(imported.notes)
    dropped = mod["main"].attrs.get(DROPPED_HEAD) if mod["main"].attrs else None
    if dropped:
        notes.append(
            f"the final {dropped} was dropped: it keeps the order of the classes, so the argmax "
            "(the smoothed classifier's vote) is unchanged"
        )
        mod = _without_attr(mod, DROPPED_HEAD)
    return dataclasses.replace(
        imported, mod=mod, canonical=True, frontend_mod=imported.mod, notes=tuple(notes)
    )


def _without_attr(mod, attr: str):
    import tvm

    out = tvm.IRModule({gv: f for gv, f in mod.functions_items()}, attrs=mod.attrs)
    out["main"] = mod["main"].without_attr(attr)
    return out
