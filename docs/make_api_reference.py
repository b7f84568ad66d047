"""Write docs/api.md from the docstrings of the public API (``python docs/make_api_reference.py``).

tests/test_docs.py fails when docs/api.md differs from what this script writes, so the reference
cannot drift from the code.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "api.md"

# (section title, module, names): the public API in the order a user meets it.
SECTIONS = [
    ("Models in", "tvm_intsmooth", ["import_onnx", "ImportedModel"]),
    (
        "Calibrate and quantize",
        "tvm_intsmooth",
        ["calibrate", "Calibration", "CalibrationReader", "quantize_static", "QuantizedModel"],
    ),
    ("Smooth", "tvm_intsmooth", ["smooth", "SmoothedModel"]),
    ("The registered pipeline", "tvm_intsmooth", ["IntSmoothPipeline"]),
    (
        "Passes: tvm_intsmooth.transform",
        "tvm_intsmooth.transform",
        [
            "QuantizeToInteger",
            "InjectIntegerNoise",
            "CountVotes",
            "AddArtifactFacts",
            "ConvertToBlockedInt8",
            "ScalarConstantsAsTensors",
            "ApplyTunedDatabase",
            "ScheduleBlockedKernels",
            "ParallelizeOuterLoops",
            "FuseSampleLoops",
            "DropRepeatedTileConfigs",
            "CheckIntegerOnly",
            "DumpIR",
        ],
    ),
    ("Build", "tvm_intsmooth", ["build", "resolve_target", "check_integer_only"]),
    (
        "Run, certify, predict",
        "tvm_intsmooth",
        ["SmoothedClassifier", "save_artifact", "load_artifact", "FloatSmoothedClassifier"],
    ),
    (
        "Statistics: tvm_intsmooth.certify (no TVM needed)",
        "tvm_intsmooth.certify",
        [
            "certify",
            "certify_count",
            "predict",
            "lower_confidence_bound",
            "Certificate",
            "ABSTAIN",
            "certify_sequential",
            "SequentialCertificate",
            "confidence_sequence_lower",
            "confidence_sequence_upper",
            "read_results",
            "ResultsWriter",
            "ResultRow",
            "certified_accuracy",
            "max_certifiable_radius",
        ],
    ),
    (
        "Remote devices over TVM RPC: tvm_intsmooth.remote",
        "tvm_intsmooth.remote",
        ["Device", "EmulatedPi", "prepare", "benchmark", "BenchResult", "RemoteCertifier"],
    ),
    ("Errors", "tvm_intsmooth", ["IntSmoothError", "UnsupportedModelError", "DataError"]),
]


def _annotation(annotation) -> str:
    if isinstance(annotation, str):
        return annotation
    return inspect.formatannotation(annotation)


def signature(obj, skip_self: bool = False) -> str:
    """``(a: int, *, b: str = 'x') -> T`` with string annotations shown unquoted."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"
    parts, star_done = [], False
    params = list(sig.parameters.values())
    if skip_self and params and params[0].name == "self":
        params = params[1:]
    for p in params:
        if p.kind is p.KEYWORD_ONLY and not star_done:
            parts.append("*")
            star_done = True
        text = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "") + p.name
        star_done = star_done or p.kind is p.VAR_POSITIONAL
        if p.annotation is not p.empty:
            text += f": {_annotation(p.annotation)}"
        if p.default is not p.empty:
            text += f" = {p.default!r}"
        parts.append(text)
    ret = ""
    if sig.return_annotation is not sig.empty and not skip_self:
        ret = f" -> {_annotation(sig.return_annotation)}"
    return f"({', '.join(parts)}){ret}"


def _doc(obj) -> str:
    return inspect.cleandoc(obj.__doc__ or "(no docstring)")


def _is_pass(cls) -> bool:
    import tvm

    return isinstance(cls, type) and issubclass(cls, tvm.transform.Pass)


def _methods(cls) -> list[tuple[str, object]]:
    """Public methods and properties defined by the class itself (not by TVM's bases)."""
    found = []
    for klass in cls.__mro__:
        if not klass.__module__.startswith("tvm_intsmooth"):
            continue
        for name, member in vars(klass).items():
            if name.startswith("_") or any(name == n for n, _ in found):
                continue
            if isinstance(member, classmethod | staticmethod):
                member = member.__func__
            if inspect.isfunction(member) or isinstance(member, property):
                found.append((name, member))
    return found


def entry(name: str, obj) -> list[str]:
    if inspect.isclass(obj):
        init = obj.__init__
        head = f"### class `{name}{signature(init, skip_self=True)}`"
        lines = [head, "", _doc(obj), ""]
        if not _is_pass(obj) and not issubclass(obj, BaseException):
            for method_name, method in _methods(obj):
                if isinstance(method, property):
                    lines += [f"#### `{name}.{method_name}` (property)", "", _doc(method), ""]
                else:
                    sig = signature(method, skip_self=False).replace("(self, ", "(", 1)
                    sig = sig.replace("(self)", "()", 1).replace("(cls, ", "(", 1)
                    lines += [f"#### `{name}.{method_name}{sig}`", "", _doc(method), ""]
        return lines
    if callable(obj):
        return [f"### `{name}{signature(obj)}`", "", _doc(obj), ""]
    return [f"### `{name}` = `{obj!r}`", ""]


def render() -> str:
    import importlib

    lines = [
        "# API reference",
        "",
        "Generated from the docstrings by `docs/make_api_reference.py`; do not edit by hand.",
        "`import tvm_intsmooth as tis` gives the names below; `tis.certify` is the statistics",
        "subpackage. See [soundness.md](soundness.md) for what the certificates mean.",
        "",
    ]
    for title, module_name, names in SECTIONS:
        module = importlib.import_module(module_name)
        lines += [f"## {title}", ""]
        for name in names:
            lines += entry(name, getattr(module, name))
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    OUT.write_text(render())
    print(f"wrote {OUT}")
