"""Fair budgets: per-prompt arms share prompts, pool arms draw from their own selection; nested, seeded."""

from __future__ import annotations

import numpy as np

from pairsift.compare.draws import PAIR_STREAM, PROMPT_STREAM, draw
from pairsift.compare.split import uniform_hash


def _arm(prompts, pairs, usable=None):
    prompts = np.asarray(prompts, dtype=np.uint64)
    pairs = np.asarray(pairs, dtype=np.uint64)
    return prompts, pairs, np.ones(len(prompts), bool) if usable is None else np.asarray(usable)


def test_per_prompt_arms_get_the_same_prompts_in_the_same_order():
    rng = np.random.default_rng(0)
    prompts = rng.choice(2**40, size=50, replace=False).astype(np.uint64)
    a = _arm(prompts, rng.integers(0, 2**40, 50))
    perm = rng.permutation(50)
    usable = np.ones(50, bool)
    usable[3] = False  # arm b cannot use its pick of one prompt: that prompt is nobody's
    b = _arm(prompts[perm], rng.integers(0, 2**40, 50), usable)
    d = draw(7, {"a": a, "b": b}, {"a": True, "b": True})
    pa_, pb = a[0][d.order["a"]], b[0][d.order["b"]]
    assert d.eligible_prompts == 49 and len(pa_) == len(pb) == 49
    assert pa_.tolist() == pb.tolist()
    assert prompts[perm][3] not in set(pa_.tolist())
    u = uniform_hash(pa_, 7, PROMPT_STREAM)
    assert np.all(np.diff(u) > 0)  # budget N = the N smallest draws: nested budgets
    other = draw(8, {"a": a, "b": b}, {"a": True, "b": True})
    assert other.order["a"].tolist() != d.order["a"].tolist()
    # Another arm joining does not change the order of the shared prompts (draws are hashes).
    alone = draw(7, {"a": a}, {"a": True})
    assert a[0][alone.order["a"]][np.isin(a[0][alone.order["a"]], pa_)].tolist() == pa_.tolist()


def test_pool_arms_draw_from_their_own_selection_with_shared_pair_priorities():
    rng = np.random.default_rng(1)
    pairs = rng.choice(2**40, size=100, replace=False).astype(np.uint64)
    prompts = rng.integers(0, 2**40, 100)
    easy = _arm(prompts[:50], pairs[:50])
    rand = _arm(prompts[25:75], pairs[25:75])
    d = draw(3, {"easy": easy, "rand": rand}, {"easy": False, "rand": False})
    e, r = pairs[:50][d.order["easy"]], pairs[25:75][d.order["rand"]]
    assert set(e.tolist()) == set(pairs[:50].tolist()) and d.available("rand") == 50
    assert np.all(np.diff(uniform_hash(e, 3, PAIR_STREAM)) > 0)
    common = set(pairs[25:50].tolist())
    assert [x for x in e.tolist() if x in common] == [x for x in r.tolist() if x in common]
