"""The eval curve as a PNG: loss, reward accuracy and reward margin against the training step."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..plot import COLORS, figure, save


def plot_eval_curve(report: Any, path: str | Path) -> str:
    """Three panels sharing the step axis (one point per checkpoint); models without a step are
    placed by their order. `report` is an :class:`~pairsift.train.evaluate.EvalReport`."""
    results = report.results
    steps = [r["step"] for r in results]
    by_order = any(s is None for s in steps)
    x = list(range(len(results))) if by_order else steps
    fig = figure(11, 3.6)
    panels = [
        ("loss", "DPO loss", "held-out DPO loss", (math.log(2), "ln 2 (policy = reference)")),
        ("reward_accuracy", "accuracy", "reward accuracy", (0.5, "chance")),
        ("reward_margin_beta", "margin", "reward margin (with beta)", (0.0, "no margin")),
    ]
    axes = fig.subplots(1, 3, sharex=True)
    for ax, (key, ylabel, title, (level, what)) in zip(axes, panels):
        ax.axhline(level, color=COLORS[1], linewidth=0.8, linestyle="--", label=what)
        ax.plot(x, [r[key] for r in results], marker="o", color=COLORS[0], label=ylabel)
        ax.legend(fontsize=8, frameon=False, loc="best")
        ax.set_xlabel("checkpoint (order)" if by_order else "training step")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    if report.results and "reward_accuracy" in report.results[0]:
        axes[1].set_ylim(-0.02, 1.02)
    n = results[-1]["n_pairs"] if results else 0
    fig.suptitle(f"eval on subset '{report.subset}' ({n:,} pairs), reference {Path(str(report.ref_model)).name}, "
                 f"beta {report.beta}", fontsize=11)
    fig.tight_layout()
    return save(fig, path)
