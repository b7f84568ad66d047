"""The documentation stays true: the API reference matches the docstrings, every relative link
in README.md and docs/ points at a file of the repository, and nothing points outside it."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_api_reference_is_in_sync_with_the_docstrings():
    spec = importlib.util.spec_from_file_location(
        "make_api", ROOT / "docs" / "make_api_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = module.render()
    assert (ROOT / "docs" / "api.md").read_text() == expected, (
        "docs/api.md is stale: run `python docs/make_api_reference.py` and commit it"
    )


def test_relative_links_resolve():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    pages.remove(ROOT / "docs" / "api.md")  # docstrings, with code such as mod["main"](x)
    broken = []
    for page in pages:
        for target in LINK.findall(page.read_text()):
            if "://" in target:
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert broken == []


def test_nothing_points_outside_the_repository():
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("tvm_intsmooth", "docs", "tutorials", "tests", "benchmarks")
        for path in (ROOT / folder).rglob("*")
        if path.suffix in {".py", ".md"}
        and path.name != "test_docs.py"
        and ("DESIGN.md" in path.read_text() or "../shared/" in path.read_text())
    ]
    assert offenders == []
    assert "DESIGN.md" not in (ROOT / "README.md").read_text()


def test_troubleshooting_quotes_messages_the_code_raises():
    """Each heading of docs/troubleshooting.md quotes words of an error message in the source."""
    source = "".join(p.read_text() for p in (ROOT / "tvm_intsmooth").rglob("*.py"))
    source = re.sub(r'"\s*\n\s*f?"', "", source)  # join implicitly concatenated strings
    headings = re.findall(r"^### `(.+)`$", (ROOT / "docs" / "troubleshooting.md").read_text(), re.M)
    assert len(headings) >= 20
    missing = [
        h
        for h in headings
        if h not in source and h.replace("2 ", "{len(unsupported)} ") not in source
    ]
    assert missing == []
