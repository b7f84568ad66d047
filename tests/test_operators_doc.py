"""docs/operators.md against the code: one row per ONNX operator the pre-scan accepts on
activations, per Relax operator with an integer rule (and the rule module that has it), per Relax
operator refused by name, and per canonicalization pass of the phase."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "operators.md"


def _section(title: str) -> str:
    text = DOC.read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def _first_column(title: str) -> list[str]:
    return re.findall(r"^\| `([^`]+)` \|", _section(title), re.M)


def test_every_onnx_operator_accepted_on_activations_has_one_row():
    from tvm_intsmooth.importer.onnx_prescan import ACTIVATION_OPS

    rows = _first_column("ONNX operators on activations")
    assert len(rows) == len(set(rows))
    assert set(rows) == set(ACTIVATION_OPS)


def test_every_relax_rule_has_one_row_naming_its_module():
    import tvm_intsmooth.quantize.ops  # noqa: F401  (registers the rules)
    from tvm_intsmooth.quantize.rewriter import HANDLERS

    section = _section("Relax operators with an integer rule")
    rows = dict(re.findall(r"^\| `([^`]+)` \| `([^`]+)` \|", section, re.M))
    assert len(rows) == len(_first_column("Relax operators with an integer rule"))
    assert set(rows) == set(HANDLERS)
    for op, module in rows.items():
        assert HANDLERS[op].__module__.rsplit(".", 1)[-1] == module, op


def test_every_refused_relax_operator_has_one_row():
    from tvm_intsmooth.quantize.rewriter import HANDLERS, REFUSED

    rows = _first_column("Refused by name")
    assert set(rows) == set(REFUSED)
    assert not set(REFUSED) & set(HANDLERS)


def test_every_canonicalization_pass_has_one_row():
    from tvm_intsmooth.pipeline.phases import canonicalize_phases

    (phase,) = canonicalize_phases()
    names = {p.info.name for p in phase.passes.passes if p.info.name != "DeadCodeElimination"}
    names.discard("CanonicalizeBindings")
    assert names <= set(_first_column("How a model gets in"))


@pytest.mark.parametrize("op", ["Softmax", "LayerNormalization", "Gelu", "Attention"])
def test_refused_onnx_operators_named_in_the_doc_are_refused(op):
    from tvm_intsmooth.importer.onnx_prescan import ACTIVATION_OPS, ADVICE

    assert op in ADVICE and op in _section("ONNX operators on activations")
    assert op not in ACTIVATION_OPS or op in ("Softmax",)  # a final Softmax only
