"""The package's layers, read from its source: no import cycle, no import from a lower layer to a
higher one (docs/architecture.md). Every import counts, function-level ones included: a lazy
import still couples the two modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tvm_intsmooth"

# Lowest first; a module may import its own layer and the layers below it.
LAYERS = [
    {"errors", "compat"},
    {"data", "analysis", "reference", "certify", "assets"},
    {"importer"},
    {"quantize"},
    {"smoothing"},
    {"schedule"},
    {"transform"},
    {"pipeline"},
    {"runtime"},
    {"remote", "train"},
    {"cli", "__main__", "registration"},
]
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path, known: set[str]) -> set[str]:
    """The package's modules that ``path`` imports (``from x import y`` counts y where y is a
    module, else x)."""
    this = module_name(path, root)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                full = f"{source}.{alias.name}"
                if full in known:
                    out.add(full)
                elif source in known:
                    out.add(source)
    out.discard(this)
    return out


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    files = sorted(root.rglob("*.py"))
    known = {module_name(p, root) for p in files}
    return {module_name(p, root): imported_modules(p, root, known) for p in files}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer(module: str) -> int | None:
    """The layer of a module (None for the top package, which only lazily re-exports)."""
    parts = module.split(".")
    return None if len(parts) == 1 else RANK[parts[1]]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for source, targets in graph.items():
        for target in targets:
            low, high = layer(source), layer(target)
            if low is not None and high is not None and high > low:
                bad.append(f"{source} -> {target}")
    return sorted(bad)


def test_every_module_has_a_layer():
    assert [m for m in import_graph() if m.count(".") and m.split(".")[1] not in RANK] == []


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_no_import_from_a_lower_layer_to_a_higher_one():
    assert upward_imports(import_graph()) == []


@pytest.fixture
def scratch_package(tmp_path):
    root = tmp_path / "tvm_intsmooth"
    for name, text in {
        "__init__.py": "",
        "errors.py": "",
        "runtime/__init__.py": "from .a import x\n",
        "runtime/a.py": "def f():\n    from .b import y\n",
        "runtime/b.py": "from tvm_intsmooth.runtime.a import f\nfrom ..errors import E\n",
        "certify/__init__.py": "",
        "certify/c.py": "from tvm_intsmooth.runtime import a\n",
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_checks_see_a_lazy_cycle_and_an_upward_import(scratch_package):
    graph = import_graph(scratch_package)
    assert cycles(graph) == [["tvm_intsmooth.runtime.a", "tvm_intsmooth.runtime.b"]]
    assert upward_imports(graph) == ["tvm_intsmooth.certify.c -> tvm_intsmooth.runtime.a"]


def test_loading_artifacts_does_not_parse_the_tensor_intrinsics():
    """Importing the intrinsics package parses and registers every tensor intrinsic (1-2 s of
    TVMScript); the runtime (every CLI process, every tuning worker) must not pay it."""
    code = "import sys, tvm_intsmooth.runtime, tvm_intsmooth.pipeline.tune\n"
    code += "print(sorted(m for m in sys.modules if m.startswith('tvm_intsmooth.schedule.intr')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
