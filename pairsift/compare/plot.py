"""The label-efficiency curve (REAL's figure): held-out metric against budget, one line per arm
with its 95% interval band. Matplotlib's object-oriented API only (``Figure``), never pyplot's
global state, so plotting is safe in threads and never opens a window."""

from __future__ import annotations

import textwrap
from pathlib import Path

PRETTY = {"accuracy": "held-out preference accuracy", "log_loss": "held-out log-loss",
          "loss": "held-out DPO loss", "margin_beta": "reward margin (with beta)", "margin_raw": "reward margin (no beta)"}


def plot_curves(cells: list[dict], arms: list[str], learner, path: str | Path, title: str | None = None) -> Path:
    """Write the PNG: the primary metric, and the loss where the learner has one."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metrics = list(learner.metrics)[:2]
    fig = Figure(figsize=(5.2 * len(metrics), 4.0), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    budgets = sorted({c["budget"] for c in cells})
    for ax, metric in zip(axes, metrics):
        for i, arm in enumerate(arms):
            pts = sorted((c for c in cells if c["arm"] == arm and c["metric"] == metric), key=lambda c: c["budget"])
            x = [c["budget"] for c in pts]
            y = [c["mean"] for c in pts]
            color = f"C{i % 10}"
            band = [(c["budget"], c["lo"], c["hi"]) for c in pts if c["lo"] is not None]
            if len(pts) != 1 or not band:
                ax.plot(x, y, marker="o", ms=4, lw=1.8, color=color, label=arm)
            if len(band) > 1:
                bx, lo, hi = zip(*band)
                ax.fill_between(bx, lo, hi, color=color, alpha=0.18, lw=0)
            elif band:  # one budget: a band over one x is invisible, so error bars, side by side
                (bx, lo, hi), = band
                mean = next(c["mean"] for c in pts if c["budget"] == bx)
                dodge = bx * 0.03 * (i - (len(arms) - 1) / 2)
                ax.errorbar([bx + dodge], [mean], yerr=[[mean - lo], [hi - mean]], color=color, capsize=4, lw=1.2,
                            marker="o", ms=4, label=arm)
        if len(budgets) > 1 and budgets[-1] / max(budgets[0], 1) >= 8:
            ax.set_xscale("log")
        ax.set_xticks(budgets, [str(b) for b in budgets])
        ax.minorticks_off()
        ax.set_xlabel("label budget (training pairs)")
        ax.set_ylabel(PRETTY.get(metric, metric))
        ax.grid(True, alpha=0.3)
        if metric == "accuracy":
            ax.axhline(0.5, color="0.5", lw=0.8, ls=":")
    axes[0].legend(fontsize=8, frameon=False)
    n = max((c["n"] for c in cells), default=0)
    text = f"{title or learner.title()}: mean and 95% t-interval over {n} seeds"
    # Wrapped to the figure's width (about 13 characters per inch at 10 pt), never clipped.
    fig.suptitle(textwrap.fill(text, width=int(13 * 5.2 * len(metrics))), fontsize=10)
    path = Path(path)
    fig.savefig(path)
    return path
