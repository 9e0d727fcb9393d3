"""The repository stands alone: every citation of the methods spec points to docs/METHODS.md."""

from __future__ import annotations

import re

from tests.conftest import REPO

METHODS = REPO / "docs" / "METHODS.md"


def _files():
    for pattern in ("pairsift/**/*.py", "tests/**/*.py", "benchmarks/**/*.py", "*.md", "docs/*.md", "pyproject.toml"):
        yield from (p for p in REPO.glob(pattern) if p not in (METHODS, REPO / "tests" / "test_docs.py"))


def test_methods_citations_point_into_the_repository():
    sections = set(re.findall(r"^## (\d+)\. ", METHODS.read_text(), flags=re.M))
    assert {"1", "2", "3", "4", "5"} <= sections
    cited = 0
    for path in _files():
        text = path.read_text(errors="replace")
        for m in re.finditer("METHODS", text):
            around = text[max(0, m.start() - 5): m.end() + 3]
            where = f"{path.relative_to(REPO)}: {text[max(0, m.start() - 30): m.end() + 20]!r}"
            in_docs_link = path.parent == METHODS.parent and text[m.start() - 1: m.end() + 3] == "(METHODS.md"
            assert "docs/METHODS.md" in around or in_docs_link, f"cites a METHODS outside docs/: {where}"
            line_rest = text[m.end(): text.find("\n", m.end())]
            for section in re.findall(r"§(\d+)", line_rest[:60]):
                assert section in sections, f"{where}: docs/METHODS.md has no §{section}"
            cited += 1
    assert cited >= 10
