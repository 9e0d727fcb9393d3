"""Run a strategy and save its picks as a named, auditable subset.

A subset is two things in the store: its member rows in ``subset_members`` (pair id, prompt id,
the unordered pair a/b, rank, score, orientation and where the orientation came from) and one
manifest in ``subsets`` (strategy, every parameter, seed, the version of each table read, the
Lance tag pinning those versions, counts selected and excluded by reason, whether the subset is
labelled, creation time). Reading and writing them is :mod:`pairsift.store.subsets`, which makes
a subset appear whole or not at all, whatever crashes or runs beside it.

Counts obey ``selected + sum(excluded.values()) == rows_read``: nothing is dropped silently. A
``where`` filter that matches no pair is refused (most likely a typo; nothing is saved).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import TableNotFound, UsageError
from ..report import plural
from ..store.schema import MEMBER_ROWS
from ..store.sql import check_filter
from ..store.subsets import (
    SubsetManifest,
    delete_subset,
    read_manifest,
    read_manifests,
    read_members,
    subset_exists,
    write_subset,
)
from .scope import prompt_scope
from .strategies import Context, build_pool, get_strategy
from .strategies.base import members_table, resolve_embedding

__all__ = [
    "SubsetManifest",
    "delete_subset",
    "list_subsets",
    "load_subset",
    "select",
    "subset_exists",
]

# Also part of the Lance tag "subset-<name>.<run>" on every table read: no dots or slashes.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


def _check_name(name: str) -> None:
    if not NAME_RE.match(name or ""):
        raise UsageError(
            f"--name {name!r}: a subset name is 1-128 characters of letters, digits, '_' and '-' "
            "and starts with a letter or digit"
        )


def select(
    store,
    strategy: str,
    name: str,
    *,
    seed: int | None = 0,
    where: str | None = None,
    replace: bool = False,
    dataset: str | None = None,
    split: str | None = None,
    **params: Any,
) -> SubsetManifest:
    """Run `strategy` over ``pair_features`` and save the picks as subset `name`.

    `params` are the strategy's options (``min``, ``max``, ``embedding``, ``k``, ...; see
    :mod:`pairsift.select.strategies`); `where` is an SQL filter on ``pair_features`` pushed into
    Lance (one expression: no ``;``, no non-deterministic function such as ``random()``);
    `dataset`/`split` keep the prompts of one ingested dataset/split (resolved through
    ``prompts``, also pushed into Lance; recorded in the parameters); `seed` seeds every random
    choice (a NumPy Generator) and is recorded. Returns the saved manifest.
    """
    _check_name(name)
    if where is not None:
        where = check_filter(where, "--where")
    strat = get_strategy(strategy)
    p = strat.configure(params)
    if subset_exists(store, name) and not replace:
        raise UsageError(f"subset '{name}' already exists: choose another --name or pass --replace")
    if not store.has_table("pair_features"):
        raise TableNotFound(f"store {store.uri} has no table 'pair_features': run `pairsift pairs` first")
    resolve_embedding(store.dataset("pair_features").schema, p)
    for t in strat.tables(p):
        if not store.has_table(t):
            raise TableNotFound(f"store {store.uri} has no table '{t}': run `pairsift embed` first")
    read = ["pair_features", *strat.tables(p)] + [t for t in ("prompts", "responses") if store.has_table(t)]
    versions = store.versions(read)

    rng = np.random.default_rng(seed)
    scope = prompt_scope(store, dataset, split, versions.get("prompts"))
    pool = build_pool(store, strat, p, versions["pair_features"], where, scope)
    candidates = pool.df.height
    excluded_before = sum(pool.excluded.values())
    picks = strat.pick(pool, p, rng, Context(store, versions))
    selected = len(picks.rows)
    pool.excluded["not_selected"] += candidates - selected - (sum(pool.excluded.values()) - excluded_before)

    members = members_table(pool, picks.rows, picks.score, name, strat.orientation(p).label_source, MEMBER_ROWS)
    prompts_selected = members.column("prompt_id").unique().__len__() if selected else 0
    counts = {
        "rows_read": pool.rows_read,
        "prompts_read": pool.prompts_read,
        "candidates": candidates,
        "selected": selected,
        "prompts_selected": prompts_selected,
        "excluded": {k: v for k, v in sorted(pool.excluded.items()) if v},
        "prompts_excluded": {k: v for k, v in sorted(pool.prompts_excluded.items()) if v},
        **picks.extra,
    }
    if where and pool.rows_read and counts["excluded"].get("where", 0) == pool.rows_read:
        raise UsageError(
            f"--where {where!r} matches no pair of the {pool.rows_read:,} in pair_features: "
            f"subset '{name}' would be empty. Nothing saved."
        )
    notes = []
    half = getattr(strat, "half_variant", None)
    if half and selected:
        # A per-prompt strategy keeps one pair per prompt: on (nearly) one-pair-per-prompt data
        # (HH-RLHF) that is every pair, and the comparison the user wanted needs the -half variant.
        sizes = np.bincount(pool.df["_gi"].to_numpy())
        single = int((sizes == 1).sum())
        if single >= 0.9 * int((sizes > 0).sum()):
            notes.append(f"{plural(single, 'prompt')} of {int((sizes > 0).sum()):,} have a single candidate pair, so "
                         f"'{strat.name}' kept {selected:,} of {plural(candidates, 'pair')}: for one-pair-per-prompt "
                         f"data use {half}")
    scoped = {k: v for k, v in (("dataset", dataset), ("split", split)) if v is not None}
    manifest = SubsetManifest(
        name=name,
        strategy=strat.name,
        params={**p, "where": where, **scoped},
        notes=notes,
        seed=seed,
        labelled=bool(pool.labelled),
        counts=counts,
        store_versions=versions,
        tag="",  # set by write_subset (one tag per run)
        created_at=datetime.now(timezone.utc),
    )
    return write_subset(store, manifest, members, replace=replace)


def list_subsets(store) -> list[SubsetManifest]:
    """Every subset's manifest, oldest first."""
    return read_manifests(store)


def load_subset(store, name: str) -> tuple[SubsetManifest, pa.Table]:
    """(manifest, members in rank order) of subset `name`."""
    _check_name(name)
    manifest = read_manifest(store, name)
    return manifest, read_members(store, manifest)
