"""Per-cell statistics and the table: mean and a 95% t-interval over seeds, paired differences.

Interval: for the n runs of one (arm, budget) cell — one per seed — ``mean ± t(0.975, n-1) ·
sd / sqrt(n)`` (Student t, sd with ddof=1). It is an interval for the mean over seeds, i.e. over
the budget draw and the strategy's own randomness, with the held-out set fixed; it does not
include the sampling error of the held-out set itself (for an accuracy on n pairs, up to
±1.96·0.5/√n, which the table's header states). With one seed there is no interval.

Paired difference against the baseline arm: the same seed gives both arms the same budget draw
(per-prompt arms: the same prompts), so ``arm - baseline`` per seed is a paired sample; its
t-interval and the count of seeds where the arm beats the baseline say whether a difference is
more than noise. An interval that excludes 0 is the claim holding at that budget.
"""

from __future__ import annotations

import math

import numpy as np


def t_interval(values) -> dict:
    """n, mean, sd and the 95% t-interval (lo, hi; None for n < 2) of `values`."""
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    if n == 0:
        return {"n": 0, "mean": None, "sd": None, "lo": None, "hi": None}
    mean = float(x.mean())
    if n < 2:
        return {"n": 1, "mean": mean, "sd": None, "lo": None, "hi": None}
    from scipy.stats import t

    sd = float(x.std(ddof=1))
    half = float(t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "lo": mean - half, "hi": mean + half}


def summarise(runs: list[dict], arms: list[str], budgets: list[int], metrics, baseline: str | None) -> list[dict]:
    """One cell per (arm, budget, metric): statistics over seeds, and the paired difference vs baseline."""
    by = {}
    for r in runs:
        by.setdefault((r["arm"], r["budget"]), {})[r["seed"]] = r
    cells = []
    for budget in budgets:
        for arm in arms:
            seeds = by.get((arm, budget), {})
            for metric in metrics:
                vals = [seeds[s][metric] for s in sorted(seeds)]
                cell = {"arm": arm, "budget": budget, "metric": metric, **t_interval(vals)}
                if baseline and arm != baseline:
                    base = by.get((baseline, budget), {})
                    common = sorted(set(seeds) & set(base))
                    d = [seeds[s][metric] - base[s][metric] for s in common]
                    diff = t_interval(d)
                    cell["vs_baseline"] = {
                        "baseline": baseline, "n": diff["n"], "mean": diff["mean"], "lo": diff["lo"], "hi": diff["hi"],
                        "wins": int(sum(v > 0 for v in d)), "ties": int(sum(v == 0 for v in d)),
                    }
                cells.append(cell)
    return cells


def _fmt(c: dict, digits: int = 3) -> str:
    if c.get("mean") is None:
        return "-"
    if c.get("lo") is None:
        return f"{c['mean']:.{digits}f}"
    return f"{c['mean']:.{digits}f} [{c['lo']:.{digits}f}, {c['hi']:.{digits}f}]"


def _fmt_diff(c: dict) -> str:
    v = c.get("vs_baseline")
    if not v or v["mean"] is None:
        return ""
    lo_hi = f" [{v['lo']:+.3f}, {v['hi']:+.3f}]" if v["lo"] is not None else ""
    return f"{v['mean']:+.3f}{lo_hi} {v['wins']}/{v['n']}"


def format_table(cells: list[dict], learner, baseline: str | None, manifest: dict) -> str:
    """The human table: one row per (budget, arm), one column per metric, then the paired difference."""
    metrics = list(learner.metrics)
    shown = metrics[:2]  # the primary metric and the loss; JSON has all
    primary = metrics[0]
    index = {(c["arm"], c["budget"], c["metric"]): c for c in cells}
    arms = list(dict.fromkeys(c["arm"] for c in cells))
    budgets = sorted({c["budget"] for c in cells})
    header = ["budget", "arm", "runs"] + [f"{m} (95% CI)" for m in shown]
    if baseline:
        header.append(f"{primary} - {baseline} (95% CI) wins/n")
    rows = []
    for b in budgets:
        for a in arms:
            c0 = index[(a, b, primary)]
            row = [str(b), a, str(c0["n"])] + [_fmt(index[(a, b, m)]) for m in shown]
            if baseline:
                row.append("(baseline)" if a == baseline else _fmt_diff(c0))
            rows.append(row)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    n_held = manifest["heldout"]["pairs"]
    lines = [
        f"learner {manifest['learner']['name']}: held-out {n_held:,} pairs of "
        f"{manifest['heldout']['prompts']:,} prompts; {len(manifest['seeds'])} seeds per cell; one accuracy on "
        f"{n_held:,} pairs also has a sampling margin of up to ±{1.96 * 0.5 / math.sqrt(n_held):.3f} (not in the intervals)",
        "interval: " + manifest["interval"] + ("; lower is better for " + ", ".join(learner.lower_is_better)
                                               if learner.lower_is_better else ""),
        "  ".join(h.ljust(w) for h, w in zip(header, widths)),
    ]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)
