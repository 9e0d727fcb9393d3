"""`select --dataset NAME [--split S]`: restrict the candidates to the prompts of one dataset/split.

``pair_features`` has no dataset column: the prompt ids are resolved through the ``prompts``
table (at the version the subset records) and the restriction is pushed into Lance as a
``prompt_id IN (...)`` filter, so pairs of other datasets are never read. What it excludes is
counted under ``dataset`` in the manifest, like ``--where``'s rows under ``where``.
"""

from __future__ import annotations

from ..errors import TableNotFound, UsageError
from ..store.sql import equals, is_in


def prompt_scope(store, dataset: str | None, split: str | None, version: int | None) -> str | None:
    """The SQL filter on ``pair_features`` that keeps the prompts of `dataset` (and `split`), or None."""
    if dataset is None and split is None:
        return None
    if not store.has_table("prompts"):
        raise TableNotFound(f"store {store.uri} has no table 'prompts': run `pairsift ingest` first")
    ds = store.dataset("prompts", version)
    conds = [equals(col, value) for col, value in (("dataset", dataset), ("split", split)) if value is not None]
    ids = ds.to_table(columns=["prompt_id"], filter=" AND ".join(conds)).column("prompt_id").to_pylist()
    if not ids:
        pairs = ds.to_table(columns=["dataset", "split"]).group_by(["dataset", "split"]).aggregate([])
        known = sorted(f"{d}/{s}" for d, s in zip(pairs.column("dataset").to_pylist(), pairs.column("split").to_pylist()))
        asked = "/".join(v for v in (dataset or "*", split) if v is not None)
        raise UsageError(
            f"--dataset/--split: no prompt in {asked} (the store holds {', '.join(known) or 'no prompts'})"
        )
    return is_in("prompt_id", ids)
