"""`import tvm_intsmooth as tis`: the public names, loaded lazily, and production code that does
not depend on the numpy test interpreter."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np

PACKAGE = Path(__file__).resolve().parents[1] / "tvm_intsmooth"
HEADLINE = {
    "import_onnx",
    "quantize_static",
    "smooth",
    "QuantizeToInteger",
    "InjectIntegerNoise",
    "CountVotes",
    "build",
    "SmoothedClassifier",
    "certify",
}


def test_headline_names_resolve():
    import tvm_intsmooth as tis
    import tvm_intsmooth.pipeline.smooth  # noqa: F401  (the module must not shadow the function)

    assert set(tis.__all__) >= HEADLINE
    for name in tis.__all__:
        assert getattr(tis, name) is not None, name
    assert callable(tis.smooth) and tis.smooth.__module__ == "tvm_intsmooth.pipeline.smooth"
    assert callable(tis.SmoothedClassifier.certify) and callable(tis.SmoothedClassifier.predict)
    cert = tis.certify.certify(np.array([0, 9]), np.array([1, 99]), 0.25, 0.001)
    assert cert.prediction == 1 and cert.radius > 0
    assert "interpret" not in tis.__all__  # the numpy interpreter is for tests


def test_import_and_statistics_do_not_load_tvm():
    code = (
        "import sys, tvm_intsmooth as tis; tis.certify.certify_count(0, 90, 100, 0.25, 0.001);"
        "assert 'tvm' not in sys.modules and 'tvm_ffi' not in sys.modules, 'TVM was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def test_production_code_does_not_import_the_numpy_interpreter():
    test_helpers = {PACKAGE / "smoothing" / "reference.py"}  # reference_counts, for tests
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "reference" not in path.relative_to(PACKAGE).parts[:1]
        and path not in test_helpers
        and any(m.startswith("tvm_intsmooth.reference") for m in _imports(path))
    ]
    assert offenders == []


def test_every_name_the_api_reference_lists_imports():
    """docs/api.md names only what exists: each section's names resolve from its module, and
    ``dir(tis)`` shows every public name (lazy loading hides none)."""
    import tvm_intsmooth as tis

    path = PACKAGE.parent / "docs" / "make_api_reference.py"
    spec = importlib.util.spec_from_file_location("make_api", path)
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)

    for _, module, names in reference.SECTIONS:
        loaded = importlib.import_module(module)
        missing = [name for name in names if not hasattr(loaded, name)]
        assert missing == [], f"{module} lacks {missing}"
    assert set(tis.__all__) <= set(dir(tis))
    for name in ("DataError", "UnsupportedModelError", "IntSmoothPipeline", "transform"):
        assert name in dir(tis) and getattr(tis, name) is not None
