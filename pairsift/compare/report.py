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

Label saving (REAL's "fewer labels for the same result"): for each arm's mean at budget N, the
budget at which the baseline's mean curve reaches the same value, by log-linear interpolation
between the measured budgets, and ``1 - N / that budget``. A point estimate from the means (no
interval); outside the measured budgets only a bound (``<25``, ``>920``) is given.
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


def equivalent_budget(value: float, curve: list[tuple[int, float]], higher_is_better: bool = True) -> dict:
    """The budget at which the baseline's mean curve reaches `value` (log-linear interpolation
    between measured budgets, first crossing), and the label saving ``1 - N / that``; REAL's
    "fewer labels for the same result". Outside the measured range only a bound is given."""
    pts = [(b, v if higher_is_better else -v) for b, v in sorted(curve) if v is not None]
    x = value if higher_is_better else -value
    if len(pts) < 2:
        return {"budget": None, "bound": None}
    if x < pts[0][1]:
        return {"budget": None, "bound": f"<{pts[0][0]}"}
    for (b0, v0), (b1, v1) in zip(pts, pts[1:]):
        if min(v0, v1) <= x <= max(v0, v1) and v1 != v0:
            t = (x - v0) / (v1 - v0)
            return {"budget": math.exp(math.log(b0) + t * (math.log(b1) - math.log(b0))), "bound": None}
    if x > max(v for _, v in pts):
        return {"budget": None, "bound": f">{pts[-1][0]}"}
    return {"budget": None, "bound": None}


def summarise(runs: list[dict], arms: list[str], budgets: list[int], metrics, baseline: str | None,
              lower_is_better=()) -> list[dict]:
    """One cell per (arm, budget, metric): statistics over seeds, the paired difference vs baseline,
    and (primary metric) the baseline budget that reaches the same mean."""
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
                    better = (lambda v: v < 0) if metric in lower_is_better else (lambda v: v > 0)
                    cell["vs_baseline"] = {
                        "baseline": baseline, "n": diff["n"], "mean": diff["mean"], "lo": diff["lo"], "hi": diff["hi"],
                        "wins": int(sum(better(v) for v in d)), "ties": int(sum(v == 0 for v in d)),
                    }
                cells.append(cell)
    if baseline:
        primary = list(metrics)[0]
        curve = [(c["budget"], c["mean"]) for c in cells if c["arm"] == baseline and c["metric"] == primary]
        for c in cells:
            if c["metric"] == primary and c["arm"] != baseline and c["mean"] is not None:
                eq = equivalent_budget(c["mean"], curve, primary not in lower_is_better)
                eq["label_saving"] = 1 - c["budget"] / eq["budget"] if eq["budget"] else None
                c["baseline_equivalent"] = eq
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


def _fmt_equiv(c: dict) -> str:
    eq = c.get("baseline_equivalent")
    if not eq:
        return ""
    if eq["budget"] is None:
        return eq["bound"] or "-"
    return f"{eq['budget']:.0f} ({eq['label_saving']:+.0%})"


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
        header += [f"{primary} - {baseline} (95% CI) wins/n", f"{baseline} budget for same {primary} (saving)"]
    rows = []
    for b in budgets:
        for a in arms:
            c0 = index[(a, b, primary)]
            row = [str(b), a, str(c0["n"])] + [_fmt(index[(a, b, m)]) for m in shown]
            if baseline:
                row += ["(baseline)", ""] if a == baseline else [_fmt_diff(c0), _fmt_equiv(c0)]
            rows.append(row)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    n_held = manifest["heldout"]["pairs"]
    scored = manifest["heldout"].get("scored")  # fewer when the learner drops some (TRL at --max-length)
    scored_min = min(scored) if isinstance(scored, list) else scored
    n_scored = scored_min if scored_min is not None and scored_min < n_held else n_held
    kept = f" ({scored if isinstance(scored, int) else f'{scored[0]:,}-{scored[-1]:,}'} scored)" \
        if n_scored < n_held else ""
    lines = [
        f"learner {manifest['learner']['name']}: held-out {n_held:,} pairs{kept} of "
        f"{manifest['heldout']['prompts']:,} prompts; {len(manifest['seeds'])} seeds per cell; one accuracy on "
        f"{n_scored:,} pairs also has a sampling margin of up to ±{1.96 * 0.5 / math.sqrt(n_scored):.3f} "
        "(not in the intervals)",
        "interval: " + manifest["interval"] + ("; lower is better for " + ", ".join(learner.lower_is_better)
                                               if learner.lower_is_better else ""),
        "  ".join(h.ljust(w) for h, w in zip(header, widths)),
    ]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)
