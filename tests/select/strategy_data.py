"""Small stores for the strategy tests: prompts, responses, fake embeddings and a pair_features
table written directly per the contract (helpers/PAIR_FEATURES.md), computed in plain Python.

A world is a list of prompts; each prompt is a list of response dicts with optional keys
``score``, ``source``, ``vec`` (list of floats), ``reward``, ``lp_sum``, ``lp_mean``, ``tokens``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pyarrow as pa

from pairsift.store import ids
from pairsift.store.schema import PROMPTS, RESPONSES, embeddings_schema
from tests.select.reference import levenshtein

EMB = "fake"
LP = "ref"
POLICY = "policy"
RM = "rm"


def random_world(rng: np.random.Generator, n_prompts: int, ks=(2, 3, 4, 6), dim: int = 8, scored=True,
                 tie_prob=0.2, nan_prob=0.05, sources=("m1", "m2", "m3")) -> list[list[dict]]:
    world = []
    for _ in range(n_prompts):
        k = int(rng.choice(ks))
        prompt = []
        for _ in range(k):
            v = rng.normal(size=dim)
            r = {
                "vec": (v / np.linalg.norm(v)).tolist(),
                "source": str(rng.choice(sources)),
                "reward": float(rng.normal()) if rng.random() > nan_prob else None,
                "lp_sum": float(rng.normal(-50, 10)),
                "lp_mean": float(rng.normal(-2, 0.5)) if rng.random() > nan_prob else float("nan"),
                "tokens": rng.integers(0, 20, size=int(rng.integers(1, 12))).tolist(),
            }
            if scored:
                r["score"] = float(rng.integers(1, 4)) if rng.random() < tie_prob else float(rng.normal())
            prompt.append(r)
        world.append(prompt)
    return world


def feature_rows(world, dataset_labels: dict | None = None, chat: bool = False) -> tuple[list[dict], list[dict], list[dict], list[dict]]:
    """(prompts, responses, embeddings, pair_features) rows for `world`.

    `dataset_labels` maps (prompt index, i, j) -> +1/-1 (response i chosen / j chosen) for
    pairs labelled by the dataset; other pairs are labelled by score when scores differ.
    """
    prompts, responses, embs, pairs = [], [], [], []
    for pi, resp in enumerate(world):
        text = f"prompt {pi}"
        msgs = [{"role": "user", "content": text}] if chat else None
        pid = ids.prompt_id(text, msgs) if chat else ids.prompt_id(text)
        prompts.append(dict(prompt_id=pid, text=text, messages=msgs, dataset="t", split="train", meta=None))
        rids = []
        for ri, r in enumerate(resp):
            rtext = f"response {ri} of prompt {pi}"
            rid = ids.response_id(pid, rtext)
            rids.append(rid)
            responses.append(dict(response_id=rid, prompt_id=pid, text=rtext, messages=None,
                                  source=r.get("source"), score=r.get("score"), blank=False, meta=None))
            if r.get("vec") is not None:
                embs.append(dict(id=rid, vector=r["vec"], n_tokens=3, truncated=False))
        for i, j in itertools.combinations(range(len(resp)), 2):
            a, b = (i, j) if rids[i] < rids[j] else (j, i)
            ra, rb = resp[a], resp[b]
            row = dict(
                pair_id=ids.pair_id(rids[a], rids[b]), prompt_id=pid, a_id=rids[a], b_id=rids[b],
                source_a=ra.get("source"), source_b=rb.get("source"),
                score_a=ra.get("score"), score_b=rb.get("score"), blank_a=False, blank_b=False,
            )
            sa, sb = ra.get("score"), rb.get("score")
            row["score_margin"] = sa - sb if sa is not None and sb is not None else None
            row["tie"] = sa is not None and sb is not None and sa == sb
            label, source = None, None
            if dataset_labels and (pi, i, j) in dataset_labels:
                lab = dataset_labels[(pi, i, j)]  # +1: i chosen
                label, source = (lab if a == i else -lab), "dataset"
            elif sa is not None and sb is not None and sa != sb:
                label, source = (1 if sa > sb else -1), "score"
            row.update(label=label, label_source=source, orientable=label is not None)
            va, vb = ra.get("vec"), rb.get("vec")
            row[f"cos_{EMB}"] = (
                float(np.float32(sum(np.float32(x) * np.float32(y) for x, y in zip(va, vb))))
                if va is not None and vb is not None else None
            )
            if "tokens" in ra:
                e = levenshtein(ra["tokens"], rb["tokens"])
                row[f"edit_{LP}"] = e
                row[f"edit_norm_{LP}"] = float(np.float32(e / max(len(ra["tokens"]), len(rb["tokens"]), 1)))
            for name in (LP, POLICY):
                row[f"dlogp_sum_{name}"] = ra["lp_sum"] - rb["lp_sum"] if "lp_sum" in ra else None
                row[f"dlogp_mean_{name}"] = ra["lp_mean"] - rb["lp_mean"] if "lp_mean" in ra else None
            row[f"dreward_{RM}"] = (
                ra["reward"] - rb["reward"] if ra.get("reward") is not None and rb.get("reward") is not None else None
            )
            pairs.append(row)
    return prompts, responses, embs, pairs


PAIR_FEATURES = pa.schema(
    [
        ("pair_id", pa.string()), ("prompt_id", pa.string()), ("a_id", pa.string()), ("b_id", pa.string()),
        ("source_a", pa.string()), ("source_b", pa.string()), ("score_a", pa.float64()), ("score_b", pa.float64()),
        ("blank_a", pa.bool_()), ("blank_b", pa.bool_()), ("label", pa.int8()), ("label_source", pa.string()),
        ("orientable", pa.bool_()), ("tie", pa.bool_()), ("score_margin", pa.float64()),
        (f"cos_{EMB}", pa.float32()), (f"edit_{LP}", pa.int32()), (f"edit_norm_{LP}", pa.float32()),
        (f"dlogp_sum_{LP}", pa.float64()), (f"dlogp_mean_{LP}", pa.float64()),
        (f"dlogp_sum_{POLICY}", pa.float64()), (f"dlogp_mean_{POLICY}", pa.float64()),
        (f"dreward_{RM}", pa.float64()),
    ]
)


def write_world(store, world, dataset_labels=None, dim: int | None = None, chat: bool = False) -> list[dict]:
    """Write `world` into `store`; return the pair_features rows (plain dicts, for references)."""
    prompts, responses, embs, pairs = feature_rows(world, dataset_labels, chat)
    dim = dim or next((len(r["vec"]) for p in world for r in p if r.get("vec") is not None), 8)
    with store.writer() as w:
        w.append("responses", pa.Table.from_pylist(responses, schema=RESPONSES), RESPONSES)
        w.append("prompts", pa.Table.from_pylist(prompts, schema=PROMPTS), PROMPTS)
        emb_schema = embeddings_schema(dim, {"model": "fake"})
        w.append(f"embeddings_{EMB}", pa.Table.from_pylist(embs, schema=emb_schema), emb_schema)
        w.append("pair_features", pa.Table.from_pylist(pairs, schema=PAIR_FEATURES), PAIR_FEATURES)
    return pairs


def is_nan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))
