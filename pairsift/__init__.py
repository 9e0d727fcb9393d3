"""pairsift: decide which preference pairs an LLM should be aligned on.

ingest -> store -> compute -> features -> selection -> training. The public API is re-exported
here and imported on first use, so ``import pairsift`` stays light: it loads only the error
classes; lancedb, polars, torch, transformers and trl wait until a name that needs them is used.

>>> import pairsift
>>> store = pairsift.open_store("pairsift-store")
>>> pairsift.ingest_file(store, "test.jsonl.gz")
>>> pairsift.embed(store, "sentence-transformers/all-MiniLM-L6-v2", name="minilm")
>>> pairsift.build_pairs(store)
>>> pairsift.select_subset(store, "easy-half", "hh-easy", embedding="minilm")

(`ingest`, `select` and `train` are the subpackages, so their main functions are exported here
as `ingest_file`, `select_subset` and `train_subset`.)
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .errors import InvalidRecord, PairsiftError

__version__ = "0.1.0"

#: public name -> (module, attribute)
_LAZY = {
    "Store": ("pairsift.store.store", "Store"),
    "open_store": ("pairsift.store.store", "open_store"),
    "ingest_file": ("pairsift.ingest.pipeline", "ingest"),
    "embed": ("pairsift.compute.embed", "embed"),
    "score_logprobs": ("pairsift.compute.score", "score_logprobs"),
    "score_rewards": ("pairsift.compute.score", "score_rewards"),
    "build_pairs": ("pairsift.features.pairs", "build_pairs"),
    "query_band": ("pairsift.features.query", "query_band"),
    "select_subset": ("pairsift.select.subsets", "select"),
    "list_subsets": ("pairsift.select.subsets", "list_subsets"),
    "load_subset": ("pairsift.select.subsets", "load_subset"),
    "export": ("pairsift.select.export", "export"),
    "import_labels": ("pairsift.label.importing", "import_labels"),
    "resolve_labels": ("pairsift.label.resolve", "resolve"),
    "label_stats": ("pairsift.label.stats", "label_stats"),
    "subset_stream": ("pairsift.train.stream", "subset_stream"),
    "train_subset": ("pairsift.train.run", "train"),
    "evaluate": ("pairsift.train.evaluate", "evaluate"),
    "stability": ("pairsift.train.stability", "stability"),
    "run_demo": ("pairsift.demo", "run_demo"),
}

__all__ = ["InvalidRecord", "PairsiftError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(import_module(module), attr)
        globals()[name] = value  # later lookups skip this hook
        return value
    raise AttributeError(f"module 'pairsift' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
