"""Run a strategy and save its picks as a named, auditable subset.

A subset is two things in the store: its member rows in ``subset_members`` (pair id, prompt id,
the unordered pair a/b, rank, score, orientation and where the orientation came from) and one
manifest row in ``subsets`` (strategy, every parameter, seed, the version of each table read,
the Lance tag pinning those versions, counts selected and excluded by reason, whether the
subset is labelled, creation time). The versions are tagged ``subset-<name>`` on every table
read, so cleanup cannot delete what a subset was selected from and export can read the same
texts later. Training reads subsets through these two tables.

Counts obey ``selected + sum(excluded.values()) == rows_read``: nothing is dropped silently.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import StoreError, SubsetNotFound, TableNotFound, UsageError
from ..report import plural
from ..store.schema import SUBSET_MEMBERS, SUBSETS
from ..store.sql import equals
from ..store.subsets import read_manifests
from .scope import prompt_scope
from .strategies import Context, build_pool, get_strategy
from .strategies.base import members_table, resolve_embedding

# Also the Lance tag "subset-<name>" on every table read, hence no dots or slashes.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


def tag_name(name: str) -> str:
    return f"subset-{name}"


@dataclass
class SubsetResult:
    name: str
    strategy: str
    params: dict[str, Any]
    seed: int | None
    labelled: bool
    counts: dict[str, Any]
    store_versions: dict[str, int]
    tag: str
    created_at: datetime
    members: pa.Table = field(repr=False)
    notes: list[str] = field(default_factory=list)  # hints shown with the summary (not stored)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("members")
        d["created_at"] = self.created_at.isoformat()
        return d

    def summary(self) -> str:
        c = self.counts
        reasons = ", ".join(f"{k}: {v:,}" for k, v in sorted(c["excluded"].items()) if v) or "none"
        state = "labelled" if self.labelled else "UNLABELLED (export it for annotation)"
        return (
            f"subset '{self.name}' ({self.strategy}): {plural(c['selected'], 'pair')} from "
            f"{plural(c['prompts_selected'], 'prompt')}, {state}\n  read {plural(c['rows_read'], 'pair')} of "
            f"{plural(c['prompts_read'], 'prompt')}; excluded: {reasons}"
        ) + "".join(f"\n  hint: {n}" for n in self.notes)


def _check_name(name: str) -> None:
    if not NAME_RE.match(name or ""):
        raise UsageError(
            f"--name {name!r}: a subset name is 1-128 characters of letters, digits, '_' and '-' "
            "and starts with a letter or digit"
        )


def subset_exists(store, name: str) -> bool:
    return store.has_table("subsets") and store.count("subsets", equals("name", name)) > 0


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
) -> SubsetResult:
    """Run `strategy` over ``pair_features`` and save the picks as subset `name`.

    `params` are the strategy's options (``min``, ``max``, ``embedding``, ``k``, ...; see
    :mod:`pairsift.select.strategies`); `where` is an SQL filter on ``pair_features`` pushed into
    Lance; `dataset`/`split` keep the prompts of one ingested dataset/split (resolved through
    ``prompts``, also pushed into Lance; recorded in the parameters); `seed` seeds every random
    choice (a NumPy Generator) and is recorded.
    """
    _check_name(name)
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

    members = members_table(pool, picks.rows, picks.score, name, strat.orientation(p).label_source, SUBSET_MEMBERS)
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
    labelled = bool(pool.labelled)
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
    result = SubsetResult(
        name=name,
        strategy=strat.name,
        params={**p, "where": where, **scoped},
        notes=notes,
        seed=seed,
        labelled=labelled,
        counts=counts,
        store_versions=versions,
        tag=tag_name(name),
        created_at=datetime.now(timezone.utc),
        members=members,
    )
    save_subset(store, result, replace=replace)
    return result


def save_subset(store, result: SubsetResult, replace: bool = False) -> None:
    """Tag the versions read, then write members and the manifest (members first, so a reader
    that sees the manifest sees every member)."""
    if replace and subset_exists(store, result.name):
        delete_subset(store, result.name)
    try:
        store.tag(result.tag, result.store_versions)
    except StoreError as e:
        raise StoreError(f"{e}: delete the stale tag '{result.tag}' or choose another --name") from e
    manifest = pa.table(
        {
            "name": [result.name],
            "strategy": [result.strategy],
            "params": [json.dumps(result.params, sort_keys=True, default=str)],
            "seed": [result.seed],
            "store_versions": [json.dumps(result.store_versions, sort_keys=True)],
            "tag": [result.tag],
            "counts": [json.dumps(result.counts, sort_keys=True)],
            "labelled": [result.labelled],
            "created_at": [result.created_at],
        },
        schema=SUBSETS,
    )
    with store.writer() as w:
        w.append("subset_members", result.members, SUBSET_MEMBERS)
        w.append("subsets", manifest, SUBSETS)
    # An empty subset writes no member rows: make sure the table exists for readers.
    if not store.has_table("subset_members"):
        store.create_table("subset_members", SUBSET_MEMBERS)


def delete_subset(store, name: str) -> None:
    """Remove a subset's members, manifest and tags (the tagged versions become collectable)."""
    manifest = _manifest_rows(store, name)
    if not manifest:
        raise SubsetNotFound(f"no subset named '{name}' (see `pairsift subsets`)")
    if store.has_table("subset_members"):
        store.table("subset_members").delete(equals("subset", name))
    store.table("subsets").delete(equals("name", name))
    for table in manifest[0]["store_versions"]:
        if store.has_table(table):
            tags = store.table(table).tags
            if manifest[0]["tag"] in tags.list():
                tags.delete(manifest[0]["tag"])


def _manifest_rows(store, name: str | None = None) -> list[dict]:
    if name is not None:
        _check_name(name)
    return read_manifests(store, name)


def list_subsets(store) -> list[dict]:
    """Every subset's manifest (JSON fields decoded), oldest first."""
    return _manifest_rows(store)


def load_subset(store, name: str) -> tuple[dict, pa.Table]:
    """(manifest, members in rank order) of subset `name`."""
    rows = _manifest_rows(store, name)
    if not rows:
        known = ", ".join(r["name"] for r in _manifest_rows(store)) or "none"
        raise SubsetNotFound(f"no subset named '{name}' (subsets: {known}); create it with `pairsift select`")
    members = store.dataset("subset_members").to_table(filter=equals("subset", name))
    order = pc.sort_indices(members, [("rank", "ascending")])
    return rows[-1], members.take(order)
