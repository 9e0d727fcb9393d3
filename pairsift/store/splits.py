"""Reading the held-out split: the one place that knows how the ``splits`` table encodes it.

`pairsift split` (:mod:`pairsift.compare.split`) writes it; the candidate pool of every selection
(:func:`pairsift.select.strategies.base.build_pool`) and `pairsift compare` read it back through
here, so selection never needs to import compare.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .ids import id_keys
from .schema import SPLITS, split_meta
from .store import Store


@dataclass(frozen=True)
class Split:
    """A held-out split: its parameters (``meta``), the table version read, and the prompt keys."""

    meta: dict
    version: int
    prompt_keys: np.ndarray = field(repr=False)  # sorted uint64 keys of every prompt the split assigns
    heldout_keys: np.ndarray = field(repr=False)  # sorted uint64 keys of the held-out prompts

    @property
    def created_at(self) -> str:
        return self.meta.get("created_at", "")

    def describe(self) -> str:
        return f"seed {self.meta.get('seed')}, holdout {self.meta.get('holdout')}, made {self.created_at}"


def read_split(store: Store, version: int | None = None) -> Split | None:
    """The store's split (at `version`, default latest), or None when `pairsift split` never ran."""
    if not store.has_table(SPLITS):
        return None
    ds = store.dataset(SPLITS, version)
    table = ds.to_table(columns=["prompt_id", "heldout"])
    keys = id_keys(table.column("prompt_id"))
    held = table.column("heldout").to_numpy(zero_copy_only=False).astype(bool)
    return Split(split_meta(ds.schema), ds.version, np.sort(keys), np.sort(keys[held]))
