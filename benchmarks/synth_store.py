"""Build the synthetic benchmark store of issue 4: N prompts x K responses, d-dim embeddings.

    python benchmarks/synth_store.py --out bench-out/synth-1m --prompts 1000000

Tables (written through ``Store.writer()``: streamed fragments, one commit per table, memory
bounded by one chunk): ``prompts``, ``responses`` (source, integer score 1..10, so equal-score
ties occur), ``pairs`` (one labelled pair per prompt for a fraction of prompts),
``embeddings_<set>`` (L2-normalised float32; a per-prompt shared direction plus per-response
noise, so cosines spread over roughly [0, 0.95] instead of clustering at 0),
``rewards_<rm>`` and ``logprobs_<lp>`` (short token-id lists, for DCRM/M_AP strategies).
Deterministic for a given --seed. 1M prompts x 4 responses x 768-d is ~12 GB on disk.
"""

from __future__ import annotations

import argparse
import sys
import time
from hashlib import blake2b
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pairsift.store import open_store  # noqa: E402
from pairsift.store.schema import (  # noqa: E402
    PAIRS,
    PROMPTS,
    RESPONSES,
    embeddings_schema,
    logprobs_schema,
    rewards_schema,
)

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


def build(out: str, prompts: int, k: int = 4, dim: int = 768, tokens: int = 32, chunk: int = 16384,
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench-out/synth")
    ap.add_argument("--prompts", type=int, default=1_000_000)
    ap.add_argument("--responses", type=int, default=4, help="responses per prompt (K)")
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--tokens", type=int, default=32, help="max token ids per response in logprobs_synth")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--labelled", type=float, default=0.5, help="fraction of prompts with a labelled pair")
    ap.add_argument("--no-extras", action="store_true", help="skip rewards_synth and logprobs_synth")
    args = ap.parse_args()
    print(build(args.out, args.prompts, args.responses, args.dim, args.tokens, seed=args.seed,
                labelled=args.labelled, extras=not args.no_extras))


if __name__ == "__main__":
    main()
