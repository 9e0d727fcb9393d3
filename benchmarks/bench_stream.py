"""Issue 5, CPU claim: the subset stream delivers >= 20k pairs/s to the training loop.

    python benchmarks/bench_stream.py --pairs 100000

Builds a store of N prompts x 2 responses (texts of ~--chars characters) and a labelled subset of
one pair per prompt (saved through ``write_subset``, as ``select`` saves one), then measures, in
the same run, what reaches a training step through a torch ``DataLoader`` (batch --batch-size,
TRL's default 8), the way TRL's ``DPOTrainer`` feeds its loop:

* ours      — ``subset_stream(store, subset, epochs=1)`` (a datasets.IterableDataset: Lance reads
              at the recorded versions, id -> offset join, shuffled order) -> DataLoader.
* baseline  — the same subset read into an in-memory ``datasets.Dataset`` (``subset_table``, the
              whole-subset read an export does) -> DataLoader(shuffle=True, seeded), as the
              Trainer's RandomSampler does. Reported twice: iteration only (the Dataset built
              before the clock starts) and read + iteration.

Two modes, both sides alike:

* raw       — batches of text rows (``default_collate``): the data path alone.
* tokenised — TRL's preparation: append EOS to chosen/rejected, tokenise prompt, prompt+chosen,
              prompt+rejected per example (the non-conversational branch of
              ``DPOTrainer._prepare_dataset``), batches padded by TRL's ``DataCollatorForPreference``.
              The baseline tokenises the whole Dataset up front with ``Dataset.map`` (what TRL does
              before training) and that time is counted; ours maps the IterableDataset lazily, so
              tokenisation happens inside the iteration. Tokeniser: --tokenizer (a fast HF one).

Each measurement is the best of --repeats; ours and the baseline alternate.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
from common import machine_line, markdown_table

from pairsift.store import PROMPTS, RESPONSES, open_store
from pairsift.store.ids import content_id
from pairsift.store.schema import MEMBER_ROWS
from pairsift.store.subsets import SubsetManifest, write_subset

WORDS = np.array("the of and to in is was he for it with as his on be at by had not are but from or have an "
                 "they which one you were all her she there would their we him been has when who will no more "
                 "if out so up said what its about than into them can only other time new some could".split())
SMOLLM = Path("/root/.cache/pairsift/smollm2-135m-instruct")  # converted once by the real-model tests


def texts(rng, n: int, chars: int) -> list[str]:
    words = max(1, chars // 5)
    idx = rng.integers(0, len(WORDS), size=(n, words))
    return [" ".join(row) for row in WORDS[idx]]


def build(store, n: int, chars: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    p_text = [f"{i}: {t}" for i, t in enumerate(texts(rng, n, chars))]
    pids = [content_id("t", t) for t in p_text]
    r_text = texts(rng, 2 * n, chars)
    rids = [content_id(pids[i // 2], "t", t) for i, t in enumerate(r_text)]
    prompts = pa.table({"prompt_id": pids, "text": p_text, "messages": pa.nulls(n, PROMPTS.field("messages").type),
                        "dataset": ["bench"] * n, "split": ["train"] * n, "meta": pa.nulls(n, pa.string())},
                       schema=PROMPTS)
    responses = pa.table({"response_id": rids, "prompt_id": np.repeat(pids, 2).tolist(), "text": r_text,
                          "messages": pa.nulls(2 * n, RESPONSES.field("messages").type),
                          "source": ["s"] * (2 * n), "score": rng.normal(size=2 * n),
                          "blank": [False] * (2 * n), "meta": pa.nulls(2 * n, pa.string())}, schema=RESPONSES)
    a, b = np.array(rids[0::2]), np.array(rids[1::2])
    swap = a > b
    lo, hi = np.where(swap, b, a), np.where(swap, a, b)
    flip = rng.random(n) < 0.5
    members = pa.table({
        "subset": ["bench"] * n, "pair_id": [content_id(x, y) for x, y in zip(lo, hi)], "prompt_id": pids,
        "rank": np.arange(n), "score": rng.random(n), "chosen_id": np.where(flip, b, a),
        "rejected_id": np.where(flip, a, b), "label_source": ["score"] * n, "a_id": lo, "b_id": hi,
    }, schema=MEMBER_ROWS)
    with store.writer() as w:
        w.append("responses", responses, RESPONSES)
        w.append("prompts", prompts, PROMPTS)
    manifest = SubsetManifest(name="bench", strategy="bench", params={}, seed=0,
                              store_versions=store.versions(["prompts", "responses"]), tag="",
                              counts={"selected": n}, labelled=True, created_at=datetime.now(timezone.utc))
    write_subset(store, manifest, members)


# ---- TRL's preparation (non-conversational branch of DPOTrainer._prepare_dataset) ----------------


def add_eos(example: dict, eos_token: str) -> dict:
    for k in ("chosen", "rejected"):
        if not example[k].endswith(eos_token):
            example[k] = example[k] + eos_token
    return example


def tokenize(example: dict, tokenizer) -> dict:
    prompt = tokenizer(example["prompt"])["input_ids"]
    chosen = tokenizer(example["prompt"] + example["chosen"])["input_ids"]
    rejected = tokenizer(example["prompt"] + example["rejected"])["input_ids"]
    n = min(_prefix(prompt, chosen), _prefix(prompt, rejected))
    return {"prompt_ids": prompt[:n], "chosen_ids": chosen[n:], "rejected_ids": rejected[n:]}


def _prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def prepare(ds, tokenizer):
    """TRL's two maps; on a Dataset they run now, on an IterableDataset when it is iterated."""
    ds = ds.map(add_eos, fn_kwargs={"eos_token": tokenizer.eos_token})
    return ds.map(tokenize, fn_kwargs={"tokenizer": tokenizer})


def drain(loader) -> int:
    """Pull every batch through the loader; the number of pairs seen."""
    n = 0
    for batch in loader:
        # TRL's collator stacks chosen then rejected sequences: two rows per pair
        n += len(batch["prompt"]) if "prompt" in batch else batch["input_ids"].shape[0] // 2
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--chars", type=int, default=300, help="approximate characters per prompt and response")
    ap.add_argument("--read-batch-size", type=int, default=8192)
    ap.add_argument("--batch-size", type=int, default=8, help="DataLoader batch (TRL's per_device_train_batch_size)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--modes", default="raw,tokenised")
    ap.add_argument("--tokenized-pairs", type=int, default=None,
                    help="pairs used by the tokenised mode (default: all; the first N of the subset's order)")
    ap.add_argument("--tokenizer", default=str(SMOLLM), help="HF tokenizer folder (fast tokenizer)")
    ap.add_argument("--out", default=None, help="store directory (default: a temp dir)")
    args = ap.parse_args()

    import datasets
    import torch
    from torch.utils.data import DataLoader, default_collate

    from pairsift.train.stream import subset_stream, subset_table

    datasets.disable_progress_bars()
    out = args.out or tempfile.mkdtemp(prefix="bench-stream-")
    store = open_store(out)
    if not store.has_table("subsets"):
        t0 = time.perf_counter()
        build(store, args.pairs, args.chars)
        print(f"built store {out}: {args.pairs:,} pairs in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    cols = ["prompt", "chosen", "rejected"]

    def stream(n=None):
        ds = subset_stream(store, "bench", epochs=1, seed=0, read_batch_size=args.read_batch_size)
        ds = ds.select_columns(cols)
        return ds.take(n) if n else ds

    def read_in_memory(n=None):
        table = subset_table(store, "bench").select(cols)
        return datasets.Dataset(table.slice(0, n) if n else table)

    def loader(ds, shuffle, collate):
        g = torch.Generator().manual_seed(0)
        return DataLoader(ds, batch_size=args.batch_size, shuffle=shuffle, generator=g if shuffle else None,
                          collate_fn=collate)

    results = {}  # (mode, side) -> (seconds, pairs)

    def best(key, fn):
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            n = fn()
            times.append(time.perf_counter() - t0)
        results[key] = (min(times), n)
        print(f"  {key[0]:<10} {key[1]:<40} {min(times):8.2f} s  {n / min(times):>10,.0f} pairs/s",
              file=sys.stderr, flush=True)

    modes = args.modes.split(",")
    if "raw" in modes:
        t0 = time.perf_counter()
        mem = read_in_memory()
        read_s = time.perf_counter() - t0
        best(("raw", "ours: stream -> DataLoader"), lambda: drain(loader(stream(), False, default_collate)))
        best(("raw", "baseline: Dataset -> DataLoader"), lambda: drain(loader(mem, True, default_collate)))
        best(("raw", "baseline: read + Dataset -> DataLoader"),
             lambda: drain(loader(read_in_memory(), True, default_collate)))
        results[("raw", "baseline read only")] = (read_s, args.pairs)
        del mem
    if "tokenised" in modes:
        from transformers import AutoTokenizer
        from trl.trainer.dpo_trainer import DataCollatorForPreference

        tok = AutoTokenizer.from_pretrained(args.tokenizer)
        collate = DataCollatorForPreference(pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else 0)
        n = args.tokenized_pairs
        mem = read_in_memory(n)

        def ours_tok():
            return drain(loader(prepare(stream(n), tok).select_columns(["prompt_ids", "chosen_ids", "rejected_ids"]),
                                False, collate))

        def base_tok(ds):
            ds = prepare(ds, tok).select_columns(["prompt_ids", "chosen_ids", "rejected_ids"])
            return drain(loader(ds, True, collate))

        best(("tokenised", "ours: stream -> map -> DataLoader"), ours_tok)
        best(("tokenised", "baseline: Dataset.map -> DataLoader"), lambda: base_tok(mem))
        best(("tokenised", "baseline: read + Dataset.map -> DataLoader"), lambda: base_tok(read_in_memory(n)))

    rows = []
    for mode in ("raw", "tokenised"):
        mine = [(k, v) for k, v in results.items() if k[0] == mode and k[1].startswith("ours")]
        if not mine:
            continue
        (_, o_name), (o_s, o_n) = mine[0]
        rows.append([mode, o_name, f"{o_n:,}", f"{o_s:.2f}", f"{o_n / o_s:,.0f}", "1.00x"])
        for (m, name), (s, n) in results.items():
            if m == mode and name.startswith("baseline:"):
                rows.append([mode, name, f"{n:,}", f"{s:.2f}", f"{n / s:,.0f}", f"**{(o_n / o_s) / (n / s):.2f}x**"])
    print(f"{args.pairs:,} pairs, ~{args.chars} chars per text, read_batch_size {args.read_batch_size}, "
          f"DataLoader batch {args.batch_size}, best of {args.repeats}; {machine_line()}")
    if ("raw", "baseline read only") in results:
        print(f"in-memory read alone (subset_table -> Dataset): {results[('raw', 'baseline read only')][0]:.2f} s")
    print(markdown_table(["mode", "path", "pairs", "seconds", "pairs/s", "ours / this (rate)"], rows, "llrrrr"))
    raw = results.get(("raw", "ours: stream -> DataLoader"))
    if raw:
        print(f"claim >= 20k pairs/s (raw stream through the DataLoader): {'MET' if raw[1] / raw[0] >= 20_000 else 'NOT MET'}")


if __name__ == "__main__":
    main()
