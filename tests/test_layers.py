"""The dependency rules of docs/ARCHITECTURE.md, checked on every import line of the package
(top-level and inside functions): rooms import only rooms before them in the flow."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pairsift"
#: The flow; a room may import the rooms before it (ingest only from cli/demo: it is text in).
FLOW = ["store", "ingest", "compute", "features", "select", "label", "train", "compare"]
#: Leaf modules every room may use; they import no room.
LEAVES = {"errors", "report", "plot", "__version__"}
#: The top: the command line and the bundled demo may import any room; nothing imports them.
TOP = {"cli", "demo"}


def _imports(path: Path, source: str | None = None) -> set[str]:
    """The pairsift top-level names (rooms or leaf modules) the module at `path` imports."""
    pkg = list(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        names: list[list[str]] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - (node.level - 1)]
                names.append(base + (node.module.split(".") if node.module else []))
                if not node.module:  # from . import x
                    names = [base + [a.name] for a in node.names]
            elif node.module:
                names.append(node.module.split("."))
        elif isinstance(node, ast.Import):
            names = [a.name.split(".") for a in node.names]
        out |= {n[1] for n in names if len(n) > 1 and n[0] == "pairsift"}
    return out


def allowed(room: str) -> set[str]:
    if room in TOP:
        return set(FLOW) | LEAVES | TOP
    if room in LEAVES:
        return {"errors"}
    before = set(FLOW[: FLOW.index(room)])
    return (before - {"ingest"}) | LEAVES


def test_rooms_import_only_rooms_before_them():
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        room = parts[0]
        if room == "__init__":
            continue
        for target in _imports(path) - {room}:
            if target not in allowed(room):
                bad.append(f"{path.relative_to(PACKAGE.parent)} imports pairsift.{target}")
    assert not bad, "\n".join(bad)


def test_the_rule_catches_a_violation():
    """The checker itself: a store module importing select is reported."""
    assert "select" not in allowed("store") and "train" not in allowed("select")
    assert "ingest" not in allowed("train") and "cli" not in allowed("compare")
    probe = PACKAGE / "store" / "probe.py"  # never written: its source is given
    assert "select" in _imports(probe, "def f():\n    from ..select import subsets\n")
