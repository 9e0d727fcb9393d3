"""Pair features on Ray (parts of whole prompts, one commit) equal `build_pairs` exactly.

The stores hold every kind of input the kernels meet: missing and null vectors, missing token
lists, NaN-free log-probs and rewards with gaps, tied and missing scores, labelled pairs, prompts
with one response. `build_pairs` itself is checked against a plain-Python reference in
tests/features/test_pairs.py.
"""

from __future__ import annotations

import random

import pytest

from pairsift.errors import UsageError
from pairsift.features.pairs import build_pairs
from pairsift.store import open_store
from tests.distributed.conftest import assert_same_table
from tests.features.test_pairs import MISSING, P, R, write_store

pytestmark = pytest.mark.ray

from pairsift.compute.distributed.cluster import RayConfig  # noqa: E402
from pairsift.features.ray_pairs import build_pairs_ray  # noqa: E402


def corpus(n: int, seed: int, first: int = 0) -> list[P]:
    rng = random.Random(seed)
    out = []
    for i in range(first, first + n):
        k = rng.choice([1, 2, 3, 4, 6])
        rs = []
        for j in range(k):
            rs.append(R(
                f"response {i}-{j}",
                score=rng.choice([None, 1.0, 2.0, 2.0, 3.0]),
                source=rng.choice(["a", "b", None]),
                blank=rng.random() < 0.05,
                vec=rng.choice([MISSING, None] + [[rng.gauss(0, 1) for _ in range(3)]] * 8),
                tokens=rng.choice([MISSING, None] + [[rng.randrange(60) for _ in range(rng.randrange(9))]] * 8),
                logp=None if rng.random() < 0.1 else (rng.gauss(-5, 1), rng.gauss(-1, 0.2)),
                reward=rng.choice([MISSING] + [rng.gauss(0, 1)] * 6),
            ))
        labels = [(0, 1)] if k >= 2 and rng.random() < 0.5 else []
        out.append(P(f"prompt {i}", rs, labels))
    return out


def same(a, b) -> None:
    assert_same_table(a.scan("pair_features").collect(), b.scan("pair_features").collect(), "pair_id", atol=1e-6)


@pytest.mark.parametrize("labelled_only", [False, True])
def test_pairs_on_ray_equal_build_pairs_and_stay_incremental(tmp_path, ray_address, labelled_only):
    a, b = open_store(tmp_path / "ray"), open_store(tmp_path / "local")
    first = corpus(60, seed=1)
    for s in (a, b):
        write_store(s, first)
    # Small parts and blocks: 8+ part tasks, several blocks and fragments each.
    cfg = RayConfig(workers=2)
    rep = build_pairs_ray(a, labelled_only=labelled_only, part_rows=25, block_rows=12, ray=cfg)
    ref = build_pairs(b, labelled_only=labelled_only)
    for k in ("mode", "prompts_added", "prompts_single", "pairs_added", "pairs_total", "labels", "feature_sets"):
        assert getattr(rep, k) == getattr(ref, k), k
    assert rep.pairs_added > (20 if labelled_only else 200)
    same(a, b)
    # New prompts arrive: both paths add only them (the Ray path in one Append).
    more = corpus(40, seed=2, first=60)
    for s in (a, b):
        write_store(s, more)
    version = a.dataset("pair_features").version
    rep = build_pairs_ray(a, labelled_only=labelled_only, part_rows=25, block_rows=12, ray=cfg)
    ref = build_pairs(b, labelled_only=labelled_only)
    assert rep.prompts_present == ref.prompts_present > 0
    assert rep.pairs_added == ref.pairs_added > 0
    assert a.dataset("pair_features").version == version + 1
    same(a, b)
    # Nothing new: no commit.
    rep = build_pairs_ray(a, labelled_only=labelled_only, part_rows=25, ray=cfg)
    assert rep.pairs_added == 0 and a.dataset("pair_features").version == version + 1


def test_pairs_on_ray_never_rewrite_the_table(tmp_path, ray_address):
    store = open_store(tmp_path / "s")
    write_store(store, corpus(10, seed=3), sets=("e",))
    build_pairs_ray(store, ray=RayConfig(workers=1))
    with pytest.raises(UsageError, match="Overwrite"):
        build_pairs_ray(store, rebuild=True, ray=RayConfig(workers=1))
    write_store(store, corpus(3, seed=5, first=100), sets=("e", "rm"))  # a reward set appears
    with pytest.raises(UsageError, match="without --executor ray"):
        build_pairs_ray(store, ray=RayConfig(workers=1))
