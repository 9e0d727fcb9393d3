"""CPU claim (issue 3): embedding the 4,624 HH-RLHF harmless-base test responses with
all-MiniLM-L6-v2 through pairsift's engine is at least as fast as sentence-transformers' `encode`
on the same texts, same model files, same process — and gives the same vectors.

    python benchmarks/bench_embed_cpu.py [--repeats 5] [--batch-tokens 8192] [--st-batch 32]
    python benchmarks/bench_embed_cpu.py --data alpaca --sample 3000 --repeats 3   # issue 12: long texts

The CPU is shared with other jobs, so the two are run interleaved `--repeats` times and the
median of the per-round ratios is reported. Our timing includes tokenisation (one batched call),
batching, forward, pooling and normalisation — everything `encode` does; model loading is
excluded for both. `--store` also times the full `pairsift.compute.embed.embed` into a store.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
HH = REPO.parent / "shared" / "data" / "hh-rlhf-harmless-base" / "test.jsonl.gz"
ALPACA = REPO.parent / "shared" / "data" / "alpaca-eval-multiresponse" / "dev.jsonl.gz"


def hh_responses(path: Path) -> list[str]:
    """The response of every chosen and rejected: the text after the last '\\n\\nAssistant:'."""
    out = []
    with gzip.open(path, "rt") as f:
        for line in f:
            row = json.loads(line)
            for side in ("chosen", "rejected"):
                out.append(row[side].rsplit("\n\nAssistant:", 1)[-1])
    return out


def alpaca_responses(path: Path) -> list[str]:
    """Every response text of the AlpacaEval multi-response file (before ingest's dedup)."""
    out = []
    with gzip.open(path, "rt") as f:
        for line in f:
            for r in json.loads(line)["responses"]:
                out.append(r["output"])
    return out


def ours(loaded, texts, batch_tokens, max_length):
    """What `pairsift embed` runs, minus the store: sliced tokenisation, the engine, and the
    outputs regrouped into chunk buffers (`chunked`), as the job hands them to its writer."""
    from pairsift.compute.embed import pool_forward
    from pairsift.compute.engine import Engine, chunked
    from pairsift.compute.tokenize import tokenize

    seqs, _ = tokenize(loaded.tokenizer, texts, max_length)
    engine = Engine("cpu", batch_tokens, pad_id=loaded.tokenizer.pad_token_id)
    out = np.empty((len(texts), loaded.model.config.hidden_size), np.float32)
    for idx, res in chunked(engine.run(pool_forward(loaded.model, "mean"), seqs), 4096):
        out[idx] = res["vector"]
    return out, engine


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-tokens", type=int, default=8192)
    ap.add_argument("--st-batch", type=int, default=32, help="sentence-transformers batch_size (its default: 32)")
    ap.add_argument("--limit", type=int, default=None, help="Only the first N texts (smoke runs).")
    ap.add_argument("--data", choices=["hh", "alpaca"], default="hh",
                    help="hh: the 4,624 HH test responses; alpaca: the AlpacaEval responses (long texts)")
    ap.add_argument("--sample", type=int, default=None, help="A seeded random sample of N texts.")
    ap.add_argument("--store", action="store_true", help="Also time the full embed() into a temporary store.")
    args = ap.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    from pairsift.compute.models import load, resolve

    texts = (hh_responses(HH) if args.data == "hh" else alpaca_responses(ALPACA))[: args.limit]
    if args.sample:
        pick = np.random.default_rng(0).choice(len(texts), min(args.sample, len(texts)), replace=False)
        texts = [texts[i] for i in sorted(pick)]
    path, _ = resolve("sentence-transformers/all-MiniLM-L6-v2")
    loaded = load("sentence-transformers/all-MiniLM-L6-v2", "embed", device="cpu")
    st = SentenceTransformer(path, device="cpu")
    max_length = st.max_seq_length
    print(f"{len(texts)} {args.data} responses, all-MiniLM-L6-v2 from {path}, torch threads "
          f"{torch.get_num_threads()}, max_length {max_length}, load average {os.getloadavg()}")

    # warm-up both (first-call allocations)
    ours(loaded, texts[:64], args.batch_tokens, max_length)
    st.encode(texts[:64], batch_size=args.st_batch)

    ratios, t_ours, t_st = [], [], []
    for r in range(args.repeats):
        t0 = time.perf_counter()
        a, engine = ours(loaded, texts, args.batch_tokens, max_length)
        t1 = time.perf_counter()
        b = st.encode(texts, batch_size=args.st_batch, normalize_embeddings=True, convert_to_numpy=True)
        t2 = time.perf_counter()
        t_ours.append(t1 - t0)
        t_st.append(t2 - t1)
        ratios.append((t2 - t1) / (t1 - t0))
        diff = float(np.abs(a - b).max())
        print(f"round {r}: ours {t1 - t0:6.2f}s  sentence-transformers {t2 - t1:6.2f}s  "
              f"ratio {ratios[-1]:.2f}x  max|diff| {diff:.2e}")
    print(f"real tokens {engine.tokens:,}, padded tokens {engine.padded_tokens:,} "
          f"({engine.tokens / engine.padded_tokens:.1%} real)")
    print(f"median: ours {statistics.median(t_ours):.2f}s ({len(texts) / statistics.median(t_ours):.0f} texts/s), "
          f"sentence-transformers {statistics.median(t_st):.2f}s "
          f"({len(texts) / statistics.median(t_st):.0f} texts/s)")
    print(f"MEDIAN RATIO (sentence-transformers time / ours): {statistics.median(ratios):.2f}x  "
          f"max|diff| {diff:.2e}  load average {os.getloadavg()}")

    if args.store:
        import tempfile

        import pyarrow as pa

        from pairsift.compute.embed import embed
        from pairsift.store import ids, open_store
        from pairsift.store.schema import RESPONSES

        with tempfile.TemporaryDirectory() as d:
            store = open_store(Path(d) / "s")
            rows = [{"response_id": ids.response_id(ids.prompt_id(str(i)), t), "prompt_id": ids.prompt_id(str(i)),
                     "text": t, "messages": None, "source": None, "score": None, "blank": not t.strip(),
                     "meta": None} for i, t in enumerate(texts)]
            with store.writer() as w:
                w.append("responses", pa.Table.from_pylist(rows, RESPONSES), RESPONSES)
            t0 = time.perf_counter()
            rep = embed(store, loaded, name="minilm", batch_tokens=args.batch_tokens)
            dt = time.perf_counter() - t0
            print(f"full embed() into a store: {dt:.2f}s for {rep.written} rows "
                  f"(blank {rep.blank}, truncated {rep.truncated})")


if __name__ == "__main__":
    main()
