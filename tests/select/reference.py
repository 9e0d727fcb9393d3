"""Slow, obviously-correct references for every selection strategy (plain Python, one pair at a time).

Each takes the pair_features rows as dicts (see strategy_data.py) and returns the picks in rank
order as (pair_id, orientation, score): orientation +1 = a chosen, -1 = b chosen, 0 = unknown.
They follow docs/METHODS.md literally; shared conventions with the fast path are only the ones the
spec leaves open: ties by pair id, random draws taken in pair-id order (one per prompt in prompt-id order for centroid) from
numpy's default_rng(seed), and the band's per-prompt choice being uniformly random.
"""

from __future__ import annotations

import math
from collections import defaultdict
from decimal import Decimal
from statistics import fmean, pstdev

import numpy as np


def levenshtein(a, b) -> int:
    """Token edit distance by the textbook dynamic programme (the slow, obvious reference)."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def bad(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def pool(rows, margin=None, required=()):
    """Candidates with an orientation 'o', per the rules: margin sign, else label, else all."""
    out = []
    if margin:
        for r in rows:
            if bad(r[margin]) or r[margin] == 0:
                continue
            out.append({**r, "o": 1 if r[margin] > 0 else -1})
    elif any(r["label"] is not None for r in rows):
        out = [{**r, "o": r["label"]} for r in rows if r["label"] is not None]
    else:
        out = [{**r, "o": 0} for r in rows]
    return [r for r in out if not any(bad(r[c]) for c in required)]


def by_prompt(cands):
    groups = defaultdict(list)
    for r in cands:
        groups[r["prompt_id"]].append(r)
    return groups


def draws(cands, seed):
    """u per pair_id, drawn in pair id order."""
    rng = np.random.default_rng(seed)
    order = sorted(cands, key=lambda r: r["pair_id"])
    return {r["pair_id"]: float(u) for r, u in zip(order, rng.random(len(order)))}


def out(picks, score):
    return [(r["pair_id"], r["o"], score(r)) for r in picks]


def easy(rows, col, hard=False):
    cands = pool(rows, required=[col])
    sign = -1 if hard else 1
    picks = [min(g, key=lambda r: (sign * r[col], r["pair_id"])) for g in by_prompt(cands).values()]
    picks.sort(key=lambda r: (sign * r[col], r["pair_id"]))
    return out(picks, lambda r: r[col])


def random(rows, seed):
    cands = pool(rows)
    u = draws(cands, seed)
    picks = [max(g, key=lambda r: (u[r["pair_id"]], _neg(r["pair_id"]))) for g in by_prompt(cands).values()]
    picks.sort(key=lambda r: (-u[r["pair_id"]], r["pair_id"]))
    return out(picks, lambda r: u[r["pair_id"]])


def _neg(s: str):
    return tuple(-ord(c) for c in s)  # "smaller pair id wins" inside max()


def halves(rows, col, which, seed=0):
    if which == "random":
        cands = pool(rows)
        u = draws(cands, seed)
        order = sorted(cands, key=lambda r: (-u[r["pair_id"]], r["pair_id"]))
        return out(order[: len(cands) // 2], lambda r: u[r["pair_id"]])
    cands = pool(rows, required=[col])
    order = sorted(cands, key=lambda r: (r[col], r["pair_id"]))
    half = len(order) // 2
    picks = order[:half] if which == "easy" else list(reversed(order[len(order) - half :]))
    return out(picks, lambda r: r[col])


def band(rows, col, lo, hi, per_prompt=None, seed=0):
    cands = [r for r in pool(rows, required=[col]) if lo <= r[col] <= hi]
    if per_prompt is not None:
        u = draws(cands, seed)
        keep = []
        for g in by_prompt(cands).values():
            keep += sorted(g, key=lambda r: (-u[r["pair_id"]], r["pair_id"]))[:per_prompt]
        cands = keep
    cands.sort(key=lambda r: (r[col], r["pair_id"]))
    return out(cands, lambda r: r[col])


def sigmoid(x):
    return 1 / (1 + math.exp(-x)) if x > -700 else 0.0


def dcrm(rows, margin, edit=None, dlogp=None, ablation=None, different_source=False):
    """Best-of-N² literally: every ORDERED pair (y+, y-) of a prompt with r_delta > 0."""
    best = {}
    for r in rows:
        need = [margin] + ([edit] if ablation in (None, "no-logp") else []) + ([dlogp] if ablation in (None, "no-edit") else [])
        if any(bad(r[c]) for c in need):
            continue
        if different_source and (r["source_a"] is None or r["source_b"] is None or r["source_a"] == r["source_b"]):
            continue
        for o, r_delta in ((1, r[margin]), (-1, -r[margin])):  # a over b, b over a
            if not r_delta > 0:
                continue
            num = sigmoid(r_delta) - 0.5
            den = 1 + (r[edit] if ablation in (None, "no-logp") else 0) + (abs(r[dlogp]) if ablation in (None, "no-edit") else 0)
            s = num if ablation == "margin-only" else num / den
            cur = best.get(r["prompt_id"])
            if cur is None or (s, _neg(r["pair_id"])) > (cur[2], _neg(cur[0]["pair_id"])):
                best[r["prompt_id"]] = ({**r, "o": o}, o, s)
    picks = sorted(best.values(), key=lambda t: (-t[2], t[0]["pair_id"]))
    return [(r["pair_id"], o, s) for r, o, s in picks]


def floor_ratio(ratio, n):
    return math.floor(Decimal(repr(float(ratio))) * n)


def map_ap(rows, margin, lmean, ratio=0.4, weight=1.0, variant="map", seed=0, orient_margin=None):
    need = {"map": [margin, lmean], "rm_margin": [margin], "logp_margin_norm_abs": [lmean], "rand": []}[variant]
    cands = pool(rows, margin=orient_margin, required=need)
    n = len(cands)
    if n == 0:
        return []
    if variant == "rand":
        u = draws(cands, seed)
        score = {r["pair_id"]: u[r["pair_id"]] for r in cands}
    else:
        def z(vals):
            m, s = fmean(vals), pstdev(vals)
            return [0.0 if s == 0 else (v - m) / s for v in vals]

        zr = z([abs(r[margin]) for r in cands]) if margin in need else [0.0] * n
        zl = z([abs(r[lmean]) for r in cands]) if lmean in need else [0.0] * n
        w = weight if variant == "map" else 1.0
        score = {r["pair_id"]: a - w * b for r, a, b in zip(cands, zr, zl)}
    order = sorted(cands, key=lambda r: (-score[r["pair_id"]], r["pair_id"]))
    return out(order[: floor_ratio(ratio, n)], lambda r: score[r["pair_id"]])


def top(rows, col, k=None, ratio=None, per_prompt=False, descending=False):
    cands = pool(rows, required=[col])
    sign = -1 if descending else 1
    key = lambda r: (sign * r[col], r["pair_id"])  # noqa: E731
    if per_prompt:
        picks = []
        for g in by_prompt(cands).values():
            kk = k if k is not None else floor_ratio(ratio, len(g))
            picks += sorted(g, key=key)[:kk]
        picks.sort(key=key)
    else:
        kk = k if k is not None else floor_ratio(ratio, len(cands))
        picks = sorted(cands, key=key)[:kk]
    return out(picks, lambda r: r[col])


def centroid(rows, col, vectors: dict, seed=0, n_iter=20):
    """2-means per prompt with explicit centres; from each cluster the response nearest its centre."""
    cands = pool(rows, required=[col])
    groups = by_prompt(cands)
    rng = np.random.default_rng(seed)
    us = dict(zip(sorted(groups), rng.random(len(groups))))
    picks = []
    for pid in sorted(groups):
        g = groups[pid]
        ids = sorted({r["a_id"] for r in g} | {r["b_id"] for r in g})
        x = [[float(v) for v in vectors[i]] for i in ids]
        k = len(x)

        def d2(p, c):
            return sum((a - b) ** 2 for a, b in zip(p, c))

        init = min(int(us[pid] * k), k - 1)
        c0 = x[init]
        dist0 = [d2(p, c0) for p in x]
        c1 = x[dist0.index(max(dist0))]
        centres = [c0, c1]
        assign = [0] * k
        for it in range(n_iter):
            new = [1 if d2(p, centres[1]) < d2(p, centres[0]) else 0 for p in x]
            for c in (0, 1):
                members = [p for p, a in zip(x, new) if a == c]
                if members:
                    centres[c] = [sum(col_) / len(members) for col_ in zip(*members)]
            if new == assign and it > 0:
                break
            assign = new
        own = {i: math.sqrt(d2(p, centres[a])) for i, p, a in zip(ids, x, assign)}
        cl = dict(zip(ids, assign))
        cost = {r["pair_id"]: round(own[r["a_id"]] + own[r["b_id"]], 9) for r in g}  # exact ties stay ties
        best = min(g, key=lambda r: (cl[r["a_id"]] == cl[r["b_id"]], cost[r["pair_id"]], r["pair_id"]))
        picks.append((best, cost[best["pair_id"]]))
    picks.sort(key=lambda t: (t[1], t[0]["pair_id"]))
    return [(r["pair_id"], r["o"], c) for r, c in picks]
