"""`pairsift split`: hold out a fraction of the prompts for evaluation, by prompt, from a seed.

A prompt is held out when ``u(seed, prompt) < holdout``, where ``u`` is a uniform number in
[0, 1) hashed from the prompt's 64-bit key and the seed (:func:`uniform_hash`, SplitMix64). So:

- the split is by prompt: every pair of a held-out prompt is held out, none leaks into training;
- it is deterministic from the seed and independent of row order, store layout and machine;
- adding prompts later never reshuffles old ones: a re-run with the same seed and fraction keeps
  every existing assignment and assigns only the new prompts;
- the held-out share is ``holdout`` in expectation, not exactly (a binomial count; the report
  gives the realised one). An exact count would need a global rank, which moves old prompts
  whenever new ones arrive.

Once a split exists, no selection strategy can pick a held-out prompt (the candidate pool drops
them, counted as ``held_out``; prompts ingested after the split are dropped as ``not_in_split``
until `pairsift split` runs again), and `pairsift compare` evaluates on held-out pairs only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import lance
import numpy as np
import pyarrow as pa

from ..errors import TableNotFound, UsageError
from ..report import Report, plural
from ..store import Store
from ..store.ids import id_keys
from ..store.schema import SPLITS, splits_schema
from ..store.splits import read_split

METHOD = "splitmix64(prompt_key ^ splitmix64(seed)) / 2^64 < holdout"

_M1, _M2, _GOLDEN = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on uint64 arrays (wrapping arithmetic): a fast, well-mixed hash."""
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def uniform_hash(keys: np.ndarray, seed: int, stream: int = 0) -> np.ndarray:
    """One U[0, 1) per 64-bit key, a function of (key, seed, stream) only."""
    salt = splitmix64(np.array([(int(seed) * 1_000_003 + int(stream)) & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]
    return (splitmix64(np.asarray(keys, dtype=np.uint64) ^ salt) >> np.uint64(11)).astype(np.float64) * 2.0**-53


@dataclass
class SplitResult(Report):
    seed: int
    holdout: float
    prompts: int
    heldout: int
    new_prompts: int
    changed: bool  # False: the store already held exactly this split
    version: int
    created_at: str

    def summary(self) -> str:
        share = self.heldout / self.prompts if self.prompts else 0.0
        state = "written" if self.changed else "unchanged (already in the store)"
        return (
            f"split (seed {self.seed}, holdout {self.holdout}): {self.heldout:,} of {plural(self.prompts, 'prompt')} "
            f"held out ({share:.1%}), {self.new_prompts:,} newly assigned; {state}, table 'splits' v{self.version}"
        )


def make_split(store: Store, holdout: float = 0.2, seed: int = 0, replace: bool = False) -> SplitResult:
    """Assign every prompt of the store to held-out or training; write the ``splits`` table."""
    if not 0 < holdout < 1:
        raise UsageError(f"--holdout must be in (0, 1), got {holdout}")
    if not store.has_table("prompts"):
        raise TableNotFound(f"store {store.uri} has no table 'prompts': run `pairsift ingest` first")
    old = read_split(store)
    same = old is not None and old.meta.get("seed") == seed and old.meta.get("holdout") == holdout
    if old is not None and not same and not replace:
        raise UsageError(
            f"the store already has a split ({old.describe()}); pass --replace to make a new one "
            "(subsets selected under the old split are then refused by `pairsift compare`)"
        )
    ds = store.dataset("prompts")
    ids = ds.to_table(columns=["prompt_id"]).column("prompt_id").combine_chunks()
    keys = id_keys(ids)
    held = uniform_hash(keys, seed) < holdout
    now = datetime.now(timezone.utc).isoformat()
    new_prompts = len(keys) if not same else int((~np.isin(keys, old.prompt_keys)).sum())
    if same and new_prompts == 0 and len(old.prompt_keys) == len(keys):
        return SplitResult(seed, holdout, len(keys), int(held.sum()), 0, False, old.version, old.created_at)
    meta = {
        "seed": seed,
        "holdout": holdout,
        "method": METHOD,
        "created_at": old.created_at if same else now,
        "updated_at": now,
        "store_versions": {"prompts": ds.version},
        "counts": {"prompts": len(keys), "heldout": int(held.sum())},
    }
    schema = splits_schema(meta)
    table = pa.table({"prompt_id": ids.cast(pa.string()), "heldout": pa.array(held)}, schema=schema)
    # One Overwrite commit: the table is small, and only `pairsift split` ever writes it.
    out = lance.write_dataset(table, store.table_uri(SPLITS), schema=schema,
                              mode="overwrite" if old is not None else "create",
                              storage_options=store.storage_options)
    return SplitResult(seed, holdout, len(keys), int(held.sum()), new_prompts, True, out.version, meta["created_at"])
