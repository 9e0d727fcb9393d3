"""Figures without side effects: matplotlib's object-oriented API on each figure's own Agg canvas.

Never pyplot (a test checks it is not imported): no global backend switch, no figure registry
that keeps figures alive, nothing left behind in the caller's process. Like :mod:`pairsift.report`
this imports nothing of ours but the errors, so every layer (select's distributions, train's eval
curve) draws through it. matplotlib is imported when a figure is made, never on import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import require

#: One palette for every pairsift figure: the subset, the pool (or the second model), then the rest.
COLORS = ("#1f77b4", "#7f7f7f", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")


def figure(width: float, height: float) -> Any:
    """A matplotlib Figure with its own Agg canvas (pyplot's global state is never touched)."""
    require("matplotlib", "train")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def save(fig: Any, path: str | Path, dpi: int = 110) -> str:
    """Write `fig` as a PNG at `path` (parent folders created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return str(path)
