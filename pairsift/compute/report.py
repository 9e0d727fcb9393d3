"""What an embed or score run did: the report each job returns and the CLI prints."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..report import Report, plural


@dataclass
class ComputeReport(Report):
    """Rows of a computed set: how many existed, were written, and what was odd about them.

    ``model_loaded`` is False when there was nothing left to do: the set already holds a value
    for every input row, so the weights were never loaded (the files were still fingerprinted
    and checked against the set's provenance).
    """

    table: str
    model: str | None = None
    rows_total: int = 0
    already_done: int = 0
    written: int = 0
    truncated: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    seconds: float = 0.0
    model_loaded: bool = True
    provenance: dict[str, Any] = field(default_factory=dict)

    #: Extra per-row counts shown in the summary, in order (field name -> label).
    _COUNTS: ClassVar[dict[str, str]] = {"truncated": "truncated"}

    def finish(self, written: int, engine: Any, started: float) -> None:
        """Fill in what the run wrote and the engine processed, and the time since `started`."""
        self.written = written
        self.tokens = engine.tokens
        self.padded_tokens = engine.padded_tokens
        self.seconds = round(time.perf_counter() - started, 3)

    def summary(self) -> str:
        if not self.model_loaded:
            return (f"{self.table}: nothing to do, all {plural(self.already_done, 'row')} already there "
                    f"(same model files and setup; the model was not loaded)")
        counts = ", ".join(f"{label} {getattr(self, name):,}" for name, label in self._COUNTS.items())
        rate = self.tokens / self.seconds if self.seconds else 0.0
        return (
            f"{self.table}: {plural(self.written, 'row')} written, {self.already_done:,} already there "
            f"({counts}); {plural(self.tokens, 'token')} in {self.seconds:.1f}s ({rate:,.0f} tokens/s)"
        )
