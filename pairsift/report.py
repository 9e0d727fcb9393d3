"""The shape every library call's report shares: a dataclass with ``to_dict()`` and ``summary()``.

Like :mod:`pairsift.errors`, it imports nothing of ours, so every layer may use it; the CLI
prints ``summary()`` (or ``to_dict()`` as JSON with ``--json``).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any


def plural(n: int, one: str, many: str | None = None) -> str:
    """``1 pair``, ``2 pairs``, ``1,024 prompts``: a count with its noun in the right number."""
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


class Report:
    """Mixin for report dataclasses: ``to_dict()`` is the JSON the CLI prints with ``--json``."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    def summary(self) -> str:  # pragma: no cover - every report overrides it
        raise NotImplementedError
