"""Plain-Python references for the label maths, written from the textbook formulas."""

from __future__ import annotations

from collections import Counter

CATEGORIES = ("a", "b", "tie", "both_bad")


def cohen_kappa(x: list[str], y: list[str]) -> float | None:
    """Cohen (1960): (p_o - p_e) / (1 - p_e), p_e from each rater's own marginals."""
    n = len(x)
    if n == 0:
        return None
    p_o = sum(1 for u, v in zip(x, y) if u == v) / n
    cx, cy = Counter(x), Counter(y)
    p_e = sum((cx[c] / n) * (cy[c] / n) for c in set(x) | set(y))
    if p_e == 1:
        return None
    return (p_o - p_e) / (1 - p_e)


def _items(ratings: list[list[str]]) -> list[list[str]]:
    return [r for r in ratings if len(r) >= 2]


def raw_agreement(ratings: list[list[str]]) -> float | None:
    """Mean over items of the share of agreeing rater pairs (ordered pairs, no self-pairs)."""
    items = _items(ratings)
    if not items:
        return None
    shares = []
    for r in items:
        n = len(r)
        agree = sum(1 for i in range(n) for j in range(n) if i != j and r[i] == r[j])
        shares.append(agree / (n * (n - 1)))
    return sum(shares) / len(shares)


def fleiss_kappa(ratings: list[list[str]]) -> float | None:
    """Fleiss (1971), per-item P_i with each item's own number of raters."""
    items = _items(ratings)
    if not items:
        return None
    p_bar = raw_agreement(items)
    total = sum(len(r) for r in items)
    counts = Counter(c for r in items for c in r)
    p_e = sum((counts[c] / total) ** 2 for c in counts)
    if p_e == 1:
        return None
    return (p_bar - p_e) / (1 - p_e)


def majority(votes: list[str], min_votes: int = 1) -> str:
    """The resolve rule: the unique most frequent vote, else no_majority; too few: unlabelled."""
    if len(votes) < max(min_votes, 1):
        return "unlabelled"
    counts = Counter(votes)
    top = max(counts.values())
    winners = [c for c, n in counts.items() if n == top]
    return winners[0] if len(winners) == 1 else "no_majority"
