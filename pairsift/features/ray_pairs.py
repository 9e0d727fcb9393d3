"""`pairsift pairs --executor ray`: pair features of many prompts on a Ray cluster, one commit.

**Split by prompt, in storage order; no shuffle.** The driver reads the two id columns of
`responses` (as 64-bit keys, :func:`pairsift.store.ids.id_keys`, 8 bytes each), drops the prompts
already in `pair_features`, orders the prompts the way `build_pairs` does (by where their vectors,
or token ids, are stored) and cuts that order into parts of whole prompts and about equal work.
Each Ray task gets the row positions of its part's responses and labelled pairs, takes them from
Lance itself, and reads the vectors and token ids of its prompts from one stretch of each input
set: no task needs another task's rows and nothing is shuffled. (Cutting the prompt *key* space
instead would scatter every task's reads over the whole set: measured 2x slower per vector
here, with random ``take`` in place of range scans.) The responses' offsets in each input set
come from one compact index the driver builds once and shares zero-copy through Ray's object
store: sorted 64-bit response keys with their row offset and small values (16-32 bytes per
response per set).

Each task then runs the single-process maths unchanged (:func:`pairsift.features.kernels.block_table`
over blocks of whole prompts in storage order, exactly as :func:`pairsift.features.pairs.build_pairs`),
so the rows are the same. Memory per task is bounded by its part's small columns (``part_rows``
responses, ~100 bytes each) plus one block (``block_rows`` / ``block_pairs``), whatever the corpus
size; the driver holds ~40 bytes per response plus the index. Tasks write Lance fragments; the
driver makes them visible in **one Append commit** at the version its anti-join read
(:class:`pairsift.compute.distributed.commit.FragmentCommitter`, by prompt: a prompt another run
committed meanwhile is not added twice).

Never an Overwrite: ``--rebuild`` of an existing table and adding a new feature set's columns to
existing rows rewrite the table, which a distributed job does not do (a stale Overwrite drops a
concurrent append); both are refused with the command to run instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from ..compute.distributed.cluster import (
    RayConfig,
    connect,
    place_tasks,
    require_ray,
    root_cause,
    worker_storage_options,
)
from ..compute.distributed.commit import FragmentCommitter, Staged, write_staged
from ..errors import PairsiftError, UsageError
from ..store import Store
from ..store.ids import id_keys
from ..store.schema import PAIR_FEATURES as TABLE
from ..store.schema import FeatureSets, pair_features_schema
from .kernels import Inputs, block_table
from .pairs import (
    PairsReport,
    _count_labels,
    _in_storage_order,
    _label_pairs,
    _prefetched,
    _provenance,
    _resolve,
    existing_sets,
)

#: Responses per task (their small columns, ~100 bytes each, are what a task holds whole).
PART_ROWS = 1_000_000


@dataclass(frozen=True)
class _Job:
    """What every task needs (small; sent with each task)."""

    uri: str
    versions: dict
    sets: FeatureSets
    labelled_only: bool
    schema: pa.Schema  # the table's schema (rows are cast to it)
    block_rows: int
    block_pairs: int


def build_pairs_ray(
    store: Store,
    *,
    labelled_only: bool = False,
    embeddings: list[str] | None = None,
    logprobs: list[str] | None = None,
    rewards: list[str] | None = None,
    rebuild: bool = False,
    block_rows: int = 131_072,
    block_pairs: int = 1_000_000,
    part_rows: int = PART_ROWS,
    ray: RayConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PairsReport:
    """:func:`pairsift.features.pairs.build_pairs` for new prompts, on a Ray cluster, in one commit.

    `part_rows`: responses per task (at least one task per worker). `progress(done_prompts,
    total_prompts)`: the total is estimated from the tasks done so far and exact at the end.
    """
    t0 = time.perf_counter()
    mode = "labelled" if labelled_only else "all"
    report = PairsReport(mode=mode)
    store.table("responses")
    requested = _resolve(store, embeddings, logprobs, rewards)
    exists = store.has_table(TABLE)
    old_meta: dict = {}
    old_sets = FeatureSets()
    if exists:
        if rebuild:
            raise UsageError(
                "--rebuild with --executor ray: a rebuild replaces the whole table in one Overwrite commit, "
                "which a distributed job never makes (a concurrent append would be lost); run `pairsift pairs "
                "--rebuild` without --executor ray"
            )
        old_meta, old_sets = existing_sets(store, store.dataset(TABLE).schema, mode)
    sets = old_sets.union(requested)
    new = sets.minus(old_sets) if exists else FeatureSets()
    if new:
        raise UsageError(
            f"new feature sets ({', '.join(new.tables())}) add columns to every existing row, a table rewrite "
            "that a distributed job never makes: run `pairsift pairs` once without --executor ray"
        )
    report.feature_sets = {"embeddings": list(sets.embeddings), "logprobs": list(sets.logprobs),
                           "rewards": list(sets.rewards)}
    core = ["responses"] + (["pairs"] if store.has_table("pairs") else [])
    versions = store.versions(core + sets.tables())
    meta = {
        "mode": mode,
        "sets": report.feature_sets,
        "inputs": {**(old_meta.get("inputs") or {}), **_provenance(store, sets, versions)},
        "core_versions": {k: versions[k] for k in core},
    }
    if not exists:
        store.create_table(TABLE, pair_features_schema(sets, meta))  # empty; the rows come in one Append
    table = store.dataset(TABLE)

    ray_mod = require_ray()
    config = ray or RayConfig()
    conn = connect(config, store.storage_options)
    place = place_tasks(config)
    remote = {**place.remote_args(), **({"runtime_env": conn.task_env} if conn.task_env else {})}
    index = _set_index(store, sets, versions)
    parts, present = _partition(store, sets, versions, index, table.version if exists else None,
                                max(place.workers, -(-store.dataset("responses", versions["responses"]).count_rows()
                                                     // max(part_rows, 1))))
    index_ref = ray_mod.put(index)
    job = _Job(store.uri, versions, sets, labelled_only, table.schema, block_rows, block_pairs)
    task = ray_mod.remote(_part_task).options(**remote)

    staged: list[Staged] = []
    counts: dict[str, int] = {}
    totals = {"prompts": 0, "single": 0, "pairs": 0}
    queue = [p for p in parts if len(p[0])]
    n_parts = len(queue)
    running: list = []
    finished = 0
    try:
        while queue or running:
            while queue and len(running) < place.workers:
                responses, pairs = queue.pop(0)
                running.append(task.remote(job, responses, pairs, [index_ref]))
            done, running = ray_mod.wait(running, num_returns=1)
            out = ray_mod.get(done[0])
            finished += 1
            staged += [Staged.from_wire(f, k) for f, k in out["staged"]]
            for k in totals:
                totals[k] += out[k]
            for k, v in out["labels"].items():
                counts[k] = counts.get(k, 0) + v
            if progress:
                progress(totals["prompts"], round(totals["prompts"] * n_parts / finished))
    except PairsiftError:
        raise
    except Exception as e:
        cause = root_cause(e)
        if isinstance(cause, PairsiftError):
            raise cause from None
        raise

    committer = FragmentCommitter(store.table_uri(TABLE), "prompt_id", store.storage_options, groups=True,
                                  scan_existing=False, version=table.version)
    added = committer.commit(staged)
    report.prompts_present = present
    report.prompts_single = totals["single"]
    report.prompts_added = totals["prompts"] - totals["single"]
    report.pairs_added = added
    report.labels = dict(sorted(counts.items()))
    report.version = committer.version
    report.pairs_total = store.count(TABLE)
    report.seconds = time.perf_counter() - t0
    return report


def _partition(store: Store, sets: FeatureSets, versions: dict, index: dict, table_version: int | None,
               parts: int) -> tuple[list[tuple[np.ndarray, np.ndarray]], int]:
    """Row positions of each part's responses and labelled pairs, and the prompts already built.

    Responses are deduplicated as `build_pairs` does (the first row of an id is kept); prompts
    with rows in `pair_features` at `table_version` are left out (an anti-join on 64-bit keys).
    """
    ds = store.dataset("responses", versions["responses"])
    ids = ds.to_table(columns=["response_id", "prompt_id"])
    rk, pk = id_keys(ids.column("response_id")), id_keys(ids.column("prompt_id"))
    del ids
    _, first = np.unique(rk, return_index=True)
    first.sort()
    rk, pk, pos = rk[first], pk[first], first.astype(np.int64)
    present = 0
    if table_version is not None:
        done = np.unique(id_keys(store.dataset(TABLE, table_version).to_table(columns=["prompt_id"]).column(0)))
        present = len(done)
        if present:
            keep = ~_member(done, pk)
            rk, pk, pos = rk[keep], pk[keep], pos[keep]
    big = [f"embeddings_{e}" for e in sets.embeddings] + [f"logprobs_{lp}" for lp in sets.logprobs]
    off = np.full(len(rk), -1, np.int64)
    if big:
        at, hit = _lookup(index[big[0]], rk)
        off[hit] = index[big[0]]["off"][at[hit]]
    part = _assign(pk, off, parts)
    by_part = [np.sort(pos[part == p]) for p in range(parts)]
    pairs = [np.empty(0, np.int64) for _ in range(parts)]
    if "pairs" in versions and len(pk):
        prompts, owner = np.unique(pk, return_index=True)
        lab = id_keys(store.dataset("pairs", versions["pairs"]).to_table(columns=["prompt_id"]).column(0))
        at = np.minimum(np.searchsorted(prompts, lab), len(prompts) - 1)
        mine = prompts[at] == lab
        lab_part = np.where(mine, part[owner[at]], -1)
        rows = np.arange(len(lab), dtype=np.int64)
        pairs = [rows[lab_part == p] for p in range(parts)]
    return list(zip(by_part, pairs)), present


def _member(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[at] == keys


def _assign(pk: np.ndarray, off: np.ndarray, parts: int) -> np.ndarray:
    """The part of each response: whole prompts, in storage order (a prompt's smallest offset,
    -1 meaning none: last), cut where the work (responses + pairs) is about equal."""
    n = len(pk)
    if n == 0:
        return np.empty(0, np.int64)
    by_prompt = np.argsort(pk, kind="stable")
    spk = pk[by_prompt]
    starts = np.flatnonzero(np.r_[True, spk[1:] != spk[:-1]])
    k = np.diff(np.r_[starts, n])
    soff = off[by_prompt]
    soff = np.where(soff < 0, np.iinfo(np.int64).max, soff)
    order = np.lexsort((spk[starts], np.minimum.reduceat(soff, starts)))
    cost = (k + k * (k - 1) // 2)[order]
    cum = np.cumsum(cost)
    sorted_part = np.minimum((cum - cost) * parts // cum[-1], parts - 1)  # a prompt stays in its first part
    prompt_part = np.empty(len(starts), np.int64)
    prompt_part[order] = sorted_part
    out = np.empty(n, np.int64)
    out[by_prompt] = np.repeat(prompt_part, k)
    return out


# ---- the index of the input sets, built once by the driver ------------------------------------


def _first(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct keys and the row offset of each key's first row (what `unique(keep="first")` keeps)."""
    uniq, first = np.unique(keys, return_index=True)
    return uniq, first.astype(np.int64)


def _set_index(store: Store, sets: FeatureSets, versions: dict) -> dict:
    """Per input set: sorted response keys, their first row offset, and the small values there."""
    index = {}
    for e in sets.embeddings:
        t = f"embeddings_{e}"
        col = store.dataset(t, versions[t]).to_table(columns=["id"]).column(0)
        keys, off = _first(id_keys(col))
        index[t] = {"keys": keys, "off": off}
    for lp in sets.logprobs:
        t = f"logprobs_{lp}"
        tbl = store.dataset(t, versions[t]).to_table(columns=["response_id", "logp_sum", "logp_mean"])
        keys, off = _first(id_keys(tbl.column("response_id")))
        index[t] = {"keys": keys, "off": off, "logp_sum": _floats(tbl.column("logp_sum"))[off],
                    "logp_mean": _floats(tbl.column("logp_mean"))[off]}
    for rm in sets.rewards:
        t = f"rewards_{rm}"
        tbl = store.dataset(t, versions[t]).to_table(columns=["response_id", "reward"])
        keys, off = _first(id_keys(tbl.column("response_id")))
        index[t] = {"keys": keys, "off": off, "reward": _floats(tbl.column("reward"))[off]}
    return index


def _floats(col) -> np.ndarray:
    """float64 with NaN for null (the kernels treat null and NaN alike: not a value)."""
    return np.asarray(pl.from_arrow(col).cast(pl.Float64).fill_null(np.nan).to_numpy(), dtype=np.float64)


def _lookup(entry: dict, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position in `entry` of each key, and whether it is there."""
    if len(entry["keys"]) == 0:
        return np.zeros(len(keys), np.int64), np.zeros(len(keys), bool)
    pos = np.minimum(np.searchsorted(entry["keys"], keys), len(entry["keys"]) - 1)
    return pos, entry["keys"][pos] == keys


def _part_inputs(store: Store, todo: pl.DataFrame, sets: FeatureSets, versions: dict, index: dict) -> Inputs:
    """What :func:`pairsift.features.kernels.read_inputs` gives for these responses, from the index."""
    keys = id_keys(todo.get_column("response_id").to_arrow())
    cols, datasets = [], {}

    def opt(values: np.ndarray, hit: np.ndarray, name: str, dtype) -> pl.Series:
        return pl.Series(name, pa.array(np.where(hit, values, 0), mask=~hit)).cast(dtype)

    for e in sets.embeddings:
        t = f"embeddings_{e}"
        datasets[t] = store.dataset(t, versions[t])
        pos, hit = _lookup(index[t], keys)
        cols.append(opt(index[t]["off"][pos], hit, f"off_{t}", pl.Int64))
    for lp in sets.logprobs:
        t = f"logprobs_{lp}"
        datasets[t] = store.dataset(t, versions[t])
        pos, hit = _lookup(index[t], keys)
        cols.append(opt(index[t]["off"][pos], hit, f"off_{t}", pl.Int64))
        cols.append(opt(index[t]["logp_sum"][pos], hit, f"logp_sum_{lp}", pl.Float64))
        cols.append(opt(index[t]["logp_mean"][pos], hit, f"logp_mean_{lp}", pl.Float64))
    for rm in sets.rewards:
        t = f"rewards_{rm}"
        datasets[t] = store.dataset(t, versions[t])
        pos, hit = _lookup(index[t], keys)
        cols.append(opt(index[t]["reward"][pos], hit, f"reward_{rm}", pl.Float64))
    return Inputs(todo.with_columns(cols) if cols else todo, datasets, sets)


# ---- one part, on a worker -------------------------------------------------------------------------


def _part_task(job: _Job, responses: np.ndarray, pairs: np.ndarray, index_ref: list) -> dict:
    """The pairs of one part's prompts: fragments written, counts returned."""
    import ray

    from ..store import open_store

    index = ray.get(index_ref[0])  # zero-copy views of the driver's arrays
    store = open_store(job.uri, worker_storage_options())  # credentials from the job's environment
    out = {"staged": [], "labels": {}, "prompts": 0, "single": 0, "pairs": 0}
    cols = ["response_id", "prompt_id", "source", "score", "blank"]
    todo = pl.from_arrow(store.dataset("responses", job.versions["responses"]).take(responses, columns=cols))
    labels = _label_pairs(None)
    if len(pairs):
        labels = _label_pairs(pl.from_arrow(store.dataset("pairs", job.versions["pairs"]).take(
            pairs, columns=["prompt_id", "chosen_id", "rejected_id", "label_source"])))
    if job.labelled_only:
        todo = todo.join(labels.select("prompt_id").unique(), on="prompt_id", how="semi")
    if todo.height == 0:
        return out
    inputs = _part_inputs(store, todo, job.sets, job.versions, index)
    todo = _in_storage_order(inputs.resp, job.sets)
    ks = todo.group_by("prompt_id").len()
    out["prompts"], out["single"] = ks.height, int((ks["len"] < 2).sum())
    uri = store.table_uri(TABLE)
    for rows, fetched in _prefetched(inputs, todo, job.sets, job.block_rows, job.block_pairs):
        tbl = block_table(inputs, rows, labels, job.schema, job.labelled_only, fetched)
        if tbl.num_rows == 0:
            continue
        out["pairs"] += tbl.num_rows
        _count_labels(tbl, out["labels"])
        staged = write_staged(tbl, uri, "prompt_id", job.schema, store.storage_options)
        out["staged"].append(staged.to_wire())
    return out
