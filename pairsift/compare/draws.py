"""Fair label budgets: which N training pairs each arm gets at budget N and seed S.

Two rules, one per kind of arm (:func:`pairsift.compare.arms.is_per_prompt`):

- **Per-prompt arms** (easy, hard, centroid, random, dcrm, top/band with one pair per prompt)
  share their prompts. The eligible prompts are those EVERY per-prompt arm has a usable pick
  for; they are ordered by a per-seed uniform draw (:func:`~pairsift.compare.split.uniform_hash`
  of the prompt key), and budget N takes the first N. Every such arm gets the same N prompts and
  differs only in which pair of each prompt it took.
- **Pool-level arms** (easy-half, hard-half, random-half, map, top/band over the whole pool, a
  saved subset) choose WHICH pairs, not which pair per prompt; for single-pair data such as
  HH-RLHF the choice of pairs is a choice of prompts, so "the same prompts" cannot hold. Each
  such arm's budget is drawn from its own selection: its picks are ordered by a per-seed uniform
  draw of the pair key and budget N takes the first N. The draw is the same function for every
  arm, so two arms that selected the same pair give it the same priority (random-half and
  easy-half share the pairs they have in common in the same order).

Both draws are nested (the N=100 set is inside the N=200 set of the same seed), like adding
labels to a labelled set, and depend only on (seed, key): never on row order or on which other
arms run. The draw is a different stream from the strategy's own ``default_rng(seed)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .split import uniform_hash

PROMPT_STREAM = 1
PAIR_STREAM = 2
EVAL_STREAM = 3


def order_by_draw(keys: np.ndarray, seed: int, stream: int) -> np.ndarray:
    """Indices of `keys` sorted by their uniform draw (ties, never in practice, by key)."""
    u = uniform_hash(keys, seed, stream)
    return np.lexsort((keys, u))


@dataclass
class SeedDraw:
    """For one seed: each arm's training rows in draw order (a budget N takes the first N)."""

    order: dict[str, np.ndarray]  # arm label -> rows of the arm's usable picks, in draw order
    eligible_prompts: int  # prompts every per-prompt arm could use (0 when there are none)

    def available(self, label: str) -> int:
        return len(self.order[label])


def draw(seed: int, picks: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], per_prompt: dict[str, bool]) -> SeedDraw:
    """`picks`: label -> (prompt keys, pair keys, usable mask) of the arm's picks for this seed."""
    order: dict[str, np.ndarray] = {}
    shared = [lab for lab, pp in per_prompt.items() if pp]
    eligible = None
    for lab in shared:
        prompts, _, usable = picks[lab]
        mine = np.unique(prompts[usable])
        eligible = mine if eligible is None else np.intersect1d(eligible, mine, assume_unique=True)
    if eligible is not None:
        ranked = eligible[order_by_draw(eligible, seed, PROMPT_STREAM)]
        for lab in shared:
            prompts, _, usable = picks[lab]
            rows = np.flatnonzero(usable)
            # One pick per prompt: position of each ranked prompt among this arm's usable picks.
            by_prompt = np.argsort(prompts[rows], kind="stable")
            pos = np.searchsorted(prompts[rows][by_prompt], ranked)
            order[lab] = rows[by_prompt[pos]]
    for lab, pp in per_prompt.items():
        if pp:
            continue
        _, pairs, usable = picks[lab]
        rows = np.flatnonzero(usable)
        order[lab] = rows[order_by_draw(pairs[rows], seed, PAIR_STREAM)]
    return SeedDraw(order, 0 if eligible is None else len(eligible))
