"""Shared setup of the benchmark scripts: repository path, timing, load average, result tables,
and the synthetic pair store of issue 4 (``build_synth_store``; CLI: ``benchmarks/synth_store.py``).

Every script in ``benchmarks/`` imports this module (``import common``: a script's own folder is
first on ``sys.path``) instead of the test suite; no benchmark imports ``tests/``.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Callable, Sequence
from hashlib import blake2b
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
# Benchmarks run from a checkout (`python benchmarks/x.py`), not an installed package: the
# repository's pairsift must win over any installed copy.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pairsift.store import open_store  # noqa: E402
from pairsift.store.schema import (  # noqa: E402
    PAIRS,
    PROMPTS,
    RESPONSES,
    embeddings_schema,
    logprobs_schema,
    rewards_schema,
)

# ---- timing and machine state --------------------------------------------------------------------


def cpu_seconds() -> float:
    """User + system CPU time of this process. On a shared machine wall time includes waiting
    for the cores; CPU time does not, so both are reported."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def children_cpu_seconds() -> float:
    """User + system CPU time of the child processes waited for so far."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def peak_rss_gb() -> float:
    """Peak resident set size of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def load_average() -> list[float]:
    """1-, 5- and 15-minute load averages, rounded: the machine is shared, so every result says how busy it was."""
    return [round(x, 2) for x in os.getloadavg()]


def load_str() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def machine_line() -> str:
    return f"{os.cpu_count()} cores, load average {load_str()} (1/5/15 min)"


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Run `fn` once: (wall seconds, CPU seconds of this process, its result)."""
    t0, c0 = time.perf_counter(), cpu_seconds()
    out = fn()
    return time.perf_counter() - t0, cpu_seconds() - c0, out


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub table as BENCHMARKS.md uses; `align` one character per column ('l' or 'r', default 'r'
    after the first)."""
    align = align or "l" + "r" * (len(headers) - 1)
    sep = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(sep) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


# ---- the synthetic pair store of issue 4 ---------------------------------------------------------

SOURCES = np.array(["model_a", "model_b", "model_c", "human"])


def _ids(parts: list[str]) -> list[str]:
    # Same bytes as pairsift.store.ids.content_id for these ASCII parts, without the per-call overhead.
    return [blake2b(p.encode(), digest_size=16).hexdigest() for p in parts]


def chunk_tables(start: int, n: int, k: int, dim: int, tokens: int, rng: np.random.Generator, labelled: float):
    """Arrow tables for prompts [start, start+n)."""
    idx = np.arange(start, start + n)
    ptext = [f"synthetic prompt {i}" for i in idx]
    pids = _ids(["t\x1f" + t for t in ptext])
    rtext = [f"response {j} to prompt {i}" for i in idx for j in range(k)]
    rpids = np.repeat(np.array(pids, dtype=object), k)
    rids = _ids([f"{p}\x1ft\x1f{t}" for p, t in zip(rpids, rtext)])
    m = n * k
    score = rng.integers(1, 11, size=m).astype(np.float64)
    prompts = pa.table(
        {
            "prompt_id": pids,
            "text": ptext,
            "messages": pa.nulls(n, PROMPTS.field("messages").type),
            "dataset": ["synthetic"] * n,
            "split": ["train"] * n,
            "meta": pa.nulls(n, pa.string()),
        },
        schema=PROMPTS,
    )
    responses = pa.table(
        {
            "response_id": rids,
            "prompt_id": rpids.tolist(),
            "text": rtext,
            "messages": pa.nulls(m, RESPONSES.field("messages").type),
            "source": SOURCES[np.tile(np.arange(k) % len(SOURCES), n)],
            "score": score,
            "blank": np.zeros(m, dtype=bool),
            "meta": pa.nulls(m, pa.string()),
        },
        schema=RESPONSES,
    )
    # One labelled pair (responses 0 and 1, oriented by score, or by a coin on ties) per labelled prompt.
    lab = np.flatnonzero(rng.random(n) < labelled)
    a, b = lab * k, lab * k + 1
    first = (score[a] > score[b]) | ((score[a] == score[b]) & (rng.random(len(lab)) < 0.5))
    rids_arr = np.array(rids, dtype=object)
    chosen = np.where(first, rids_arr[a], rids_arr[b])
    rejected = np.where(first, rids_arr[b], rids_arr[a])
    pair_ids = _ids([f"{min(c, r)}\x1f{max(c, r)}" for c, r in zip(chosen, rejected)])
    pairs = pa.table(
        {
            "pair_id": pair_ids,
            "prompt_id": [pids[i] for i in lab],
            "chosen_id": chosen.tolist(),
            "rejected_id": rejected.tolist(),
            "label_source": ["dataset"] * len(lab),
            "meta": pa.nulls(len(lab), pa.string()),
        },
        schema=PAIRS,
    )
    # Embeddings: v = normalise(w * base_prompt + noise), w ~ U(0, 4), so within-prompt cosines vary.
    base = rng.standard_normal((n, 1, dim), dtype=np.float32)
    w = rng.uniform(0.0, 4.0, size=(n, k, 1)).astype(np.float32)
    vec = rng.standard_normal((n, k, dim), dtype=np.float32)
    vec *= np.float32(1.0 / np.sqrt(dim))
    base *= np.float32(1.0 / np.sqrt(dim))
    vec += w * base
    vec = vec.reshape(m, dim)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    emb = {
        "id": rids,
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vec.reshape(-1)), dim),
        "n_tokens": np.full(m, tokens, dtype=np.int32),
        "truncated": np.zeros(m, dtype=bool),
    }
    rewards = {"response_id": rids, "reward": score + rng.normal(0, 1, m), "truncated": np.zeros(m, dtype=bool)}
    ntok = rng.integers(max(1, tokens // 2), tokens + 1, size=m).astype(np.int32)
    offsets = np.zeros(m + 1, dtype=np.int32)
    np.cumsum(ntok, out=offsets[1:])
    flat = rng.integers(0, 32000, size=int(offsets[-1]), dtype=np.int32)
    lp_mean = rng.normal(-1.5, 0.3, m)
    logprobs = {
        "response_id": rids,
        "logp_sum": lp_mean * ntok,
        "logp_mean": lp_mean,
        "n_tokens": ntok,
        "token_ids": pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat)),
        "truncated": np.zeros(m, dtype=bool),
    }
    return prompts, responses, pairs, emb, rewards, logprobs


def build_synth_store(out: str, prompts: int, k: int = 4, dim: int = 768, tokens: int = 32, chunk: int = 16384,
          seed: int = 0, labelled: float = 0.5, emb_set: str = "synth", extras: bool = True) -> dict:
    store = open_store(out)
    if store.table_names():
        raise SystemExit(f"{out} is not empty; delete it first")
    rng = np.random.default_rng(seed)
    prov = {"model": "synthetic", "seed": seed}
    eschema = embeddings_schema(dim, {**prov, "pooling": "synthetic", "dim": dim})
    t0 = time.perf_counter()
    # ~64k rows per fragment keeps each staged embedding flush at ~200 MB.
    with store.writer(rows_per_file=65_536) as w:
        for start in range(0, prompts, chunk):
            n = min(chunk, prompts - start)
            p, r, pr, e, rw, lp = chunk_tables(start, n, k, dim, tokens, rng, labelled)
            w.append("responses", r, RESPONSES)
            w.append("pairs", pr, PAIRS)
            w.append("prompts", p, PROMPTS)
            w.append(f"embeddings_{emb_set}", pa.table(e, schema=eschema), eschema)
            if extras:
                w.append("rewards_synth", pa.table(rw, schema=rewards_schema(prov)), rewards_schema(prov))
                w.append("logprobs_synth", pa.table(lp, schema=logprobs_schema(prov)), logprobs_schema(prov))
            done = start + n
            if done % (chunk * 8) == 0 or done == prompts:
                print(f"  {done:,}/{prompts:,} prompts  {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return {"uri": store.uri, "prompts": prompts, "responses": prompts * k, "seconds": time.perf_counter() - t0}
