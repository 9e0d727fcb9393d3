"""A small real store with an unlabelled subset: multi-response prompts ingested by the real
pipeline, deterministic fake embeddings, pair features built by `build_pairs`, and a subset
saved by `select` (band over every cosine, so every pair of every prompt is in it)."""

from __future__ import annotations

import json
from hashlib import blake2b
from pathlib import Path

import numpy as np
import pyarrow as pa

#: Hostile texts: they must show as text and never run (HH holds adversarial content).
PAYLOADS = [
    "<script>window.__xss = 1</script>",
    '<img src=x onerror="window.__xss = 2">',
    '"><svg onload="window.__xss=3"><b>bold?</b>',
    "</textarea><script>window.__xss=4</script>",
    "{{ 7*7 }} {% raw %} ' \" & <!-- -->",
    "javascript:window.__xss=5",
]

EMB = "fake"


def _vec(text: str, dim: int = 8) -> list[float]:
    seed = int.from_bytes(blake2b(text.encode(), digest_size=8).digest(), "little")
    v = np.random.default_rng(seed).normal(size=dim)
    return (v / np.linalg.norm(v)).astype(np.float32).tolist()


def write_corpus(path: Path, n_prompts: int = 6, k: int = 3, payloads: bool = False, chat_every: int = 3,
                 scored: bool = False) -> Path:
    """A `multi` JSONL file; every `chat_every`-th prompt is a chat (message list); `scored`: each
    response has a distinct score (so pairs are oriented by score)."""
    lines = []
    for i in range(n_prompts):
        text = f"Question {i}: how do I do thing {i}?"
        if payloads:
            text += " " + PAYLOADS[i % len(PAYLOADS)]
        prompt = text
        if chat_every and i % chat_every == 0:
            prompt = [{"role": "user", "content": f"Hello, turn one of chat {i}."},
                      {"role": "assistant", "content": "Hi! How can I help?"},
                      {"role": "user", "content": text}]
        responses = []
        for j in range(k):
            r = f"Answer {j} to question {i}."
            if payloads:
                r += " " + PAYLOADS[(i + j + 1) % len(PAYLOADS)]
            responses.append({"text": r, "source": f"model_{j}", **({"score": float(j + 1)} if scored else {})})
        lines.append(json.dumps({"prompt": prompt, "responses": responses}))
    path.write_text("\n".join(lines) + "\n")
    return path


def build_store(store, tmp_path: Path, name: str = "u", **corpus) -> str:
    """Ingest, embed (fake), pair features, and an unlabelled subset `name` of every pair."""
    from pairsift.features.pairs import build_pairs
    from pairsift.ingest.pipeline import ingest
    from pairsift.select.subsets import select
    from pairsift.store.schema import embeddings_schema

    ingest(store, write_corpus(tmp_path / "corpus.jsonl", **corpus), "multi")
    resp = store.dataset("responses").to_table(columns=["response_id", "text"]).to_pylist()
    schema = embeddings_schema(8, {"model": "fake", "target": "responses"})
    rows = [{"id": r["response_id"], "vector": _vec(r["text"]), "n_tokens": 3, "truncated": False} for r in resp]
    with store.writer() as w:
        w.append(f"embeddings_{EMB}", pa.Table.from_pylist(rows, schema=schema), schema)
    build_pairs(store)
    select(store, "band", name, embedding=EMB, min=-1.0, max=1.0)
    return name


def members(store, name: str = "u") -> list[dict]:
    from pairsift.select.subsets import load_subset

    return load_subset(store, name)[1].to_pylist()
