"""Candidate pairs and their features: the `pair_features` table (`pairsift pairs`).

One row per unordered pair of responses to the same prompt (all K(K-1)/2 of them, or only the
dataset's labelled pairs), keyed by ``pair_id``, with ``a_id < b_id``. Every gap is "a minus b";
orienting a pair as (chosen, rejected) flips the sign when ``label == -1``. See
docs/ARCHITECTURE.md for the column contract.

How it runs: the responses' small columns are read once (projection pushed into Lance) and
joined with the row offset of each response in every input set (embeddings, log-probs,
rewards). Prompts are then processed in storage order, in blocks of ~``block_rows`` responses;
a thread reads block i+1 while block i is computed (the maths is in
:mod:`pairsift.features.kernels`).

Incremental: a re-run computes only prompts that have no row yet (anti-join on ``prompt_id``),
appended in one commit; with nothing new it commits nothing and reads no input set. A feature
set that appears later (a new embedding set, log-prob or reward name) adds its columns, and the
DCRM columns it enables, to every existing row: the existing rows are read batch by batch, get
the new columns, and are written again together with the new prompts in one Overwrite commit.
``rebuild=True`` recomputes everything, also in one Overwrite commit. An interrupted run leaves
the table as it was.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa

from ..errors import IntegrityError, TableNotFound, UsageError
from ..report import plural
from ..store import Store
from ..store.schema import PAIR_FEATURES as TABLE
from ..store.schema import FeatureSets, features_meta, meta_sets, pair_features_schema
from ..store.schema import provenance as read_provenance
from .kernels import Inputs, block_table, features, fetch, read_inputs, with_dcrm


@dataclass
class PairsReport:
    """What `build_pairs` did."""

    mode: str  # "all" or "labelled"
    prompts_added: int = 0
    prompts_present: int = 0
    prompts_single: int = 0  # new prompts with fewer than two responses: no pair
    pairs_added: int = 0
    pairs_total: int = 0
    columns_added: list[str] = field(default_factory=list)  # new feature columns on existing rows
    feature_sets: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)  # added pairs by label_source (+ "none"), ties
    rebuilt: bool = False
    version: int | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        sets = ", ".join(f"{k}: {', '.join(v) or '-'}" for k, v in self.feature_sets.items())
        lines = [
            f"pair_features ({self.mode} pairs): {plural(self.pairs_added, 'pair')} added for "
            f"{plural(self.prompts_added, 'new prompt')} in {self.seconds:.1f} s; "
            f"{plural(self.prompts_present, 'prompt')} already present; {plural(self.pairs_total, 'pair')} in total",
            f"feature sets: {sets}",
        ]
        if self.columns_added:
            lines.append(f"added to existing rows: {', '.join(self.columns_added)}")
        if self.prompts_single:
            lines.append(f"{plural(self.prompts_single, 'new prompt')} with fewer than two responses (no pair)")
        if self.labels:
            lines.append("orientation of added pairs: " + ", ".join(f"{k} {v:,}" for k, v in self.labels.items()))
        return "\n".join(lines)


# ---- discovering inputs ----------------------------------------------------------------------


def available_sets(store: Store) -> FeatureSets:
    """Every response-level set in the store (prompt-embedding sets are skipped)."""
    emb, lps, rms = [], [], []
    for name in store.table_names():
        if name.startswith("embeddings_"):
            prov = read_provenance(store.dataset(name).schema) or {}
            if prov.get("target", "responses") == "responses":
                emb.append(name.removeprefix("embeddings_"))
        elif name.startswith("logprobs_"):
            lps.append(name.removeprefix("logprobs_"))
        elif name.startswith("rewards_"):
            rms.append(name.removeprefix("rewards_"))
    return FeatureSets(tuple(emb), tuple(lps), tuple(rms))


def _resolve(store: Store, embeddings, logprobs, rewards) -> FeatureSets:
    found = available_sets(store)
    chosen = []
    for kind, want, have, cmd in (
        ("embeddings", embeddings, found.embeddings, "pairsift embed"),
        ("logprobs", logprobs, found.logprobs, "pairsift score logprobs"),
        ("rewards", rewards, found.rewards, "pairsift score reward"),
    ):
        if want is None:
            chosen.append(tuple(have))
            continue
        for name in want:
            if name not in have:
                raise TableNotFound(
                    f"store {store.uri} has no response table '{kind}_{name}': run `{cmd}` first "
                    f"(available: {', '.join(have) or 'none'})"
                )
        chosen.append(tuple(want))
    return FeatureSets(*chosen)



def _provenance(store: Store, sets: FeatureSets, versions: dict[str, int]) -> dict:
    """Per input table: its version read and the provenance it carries."""
    return {
        t: {"version": versions[t], "provenance": read_provenance(store.dataset(t, versions[t]).schema)}
        for t in sets.tables()
    }


def _blocks(resp: pl.DataFrame, block_rows: int, block_pairs: int) -> Iterator[pl.DataFrame]:
    """Whole prompts, ~block_rows responses or ~block_pairs pairs per block."""
    if resp.height == 0:
        return
    ks = resp.group_by("prompt_id", maintain_order=True).len()["len"].to_numpy().astype(np.int64)
    cost = np.maximum(ks / block_rows, ks * (ks - 1) / 2 / block_pairs)
    block = np.floor(np.cumsum(cost) - cost).astype(np.int64)  # a prompt starts in its block
    bounds = np.r_[0, np.cumsum(ks)]
    edges = np.flatnonzero(np.r_[True, block[1:] != block[:-1], True])
    for s, e in zip(edges[:-1], edges[1:]):
        yield resp.slice(int(bounds[s]), int(bounds[e] - bounds[s]))


# ---- labels --------------------------------------------------------------------------------------


def _labels(store: Store, version: int | None) -> pl.DataFrame:
    """The dataset's labelled pairs as (a_id, b_id, prompt_id, label, label_source), label = +1 if a chosen.

    A pair labelled both ways (two datasets disagree) gets a null label and label_source "conflict".
    """
    if version is None:
        return _label_pairs(None)
    return _label_pairs(store.scan("pairs", version).select("prompt_id", "chosen_id", "rejected_id", "label_source")
                        .collect())


def _label_pairs(p: pl.DataFrame | None) -> pl.DataFrame:
    """:func:`_labels` of rows of the `pairs` table (prompt_id, chosen_id, rejected_id, label_source)."""
    empty = pl.DataFrame(
        schema={"a_id": pl.String, "b_id": pl.String, "prompt_id": pl.String, "label": pl.Int8, "label_source": pl.String}
    )
    if p is None or p.height == 0:
        return empty
    p = p.with_columns(
        pl.min_horizontal("chosen_id", "rejected_id").alias("a_id"),
        pl.max_horizontal("chosen_id", "rejected_id").alias("b_id"),
        pl.when(pl.col("chosen_id") < pl.col("rejected_id")).then(1).otherwise(-1).cast(pl.Int8).alias("label"),
    ).filter(pl.col("a_id") != pl.col("b_id"))
    return (
        p.group_by("a_id", "b_id", maintain_order=True)
        .agg(
            pl.col("prompt_id").first(),
            pl.col("label").first(),
            pl.col("label").n_unique().alias("__n"),
            pl.col("label_source").first(),
        )
        .with_columns(
            pl.when(pl.col("__n") > 1).then(None).otherwise(pl.col("label")).alias("label"),
            pl.when(pl.col("__n") > 1).then(pl.lit("conflict")).otherwise(pl.col("label_source")).alias("label_source"),
        )
        .drop("__n")
    )


# ---- the public entry point --------------------------------------------------------------------


def build_pairs(
    store: Store,
    *,
    labelled_only: bool = False,
    embeddings: list[str] | None = None,
    logprobs: list[str] | None = None,
    rewards: list[str] | None = None,
    rebuild: bool = False,
    block_rows: int = 131_072,
    block_pairs: int = 1_000_000,
    progress: Callable[[int, int], None] | None = None,
) -> PairsReport:
    """Materialise candidate pairs and their features into `pair_features`.

    `embeddings` / `logprobs` / `rewards`: set names to compute features from (None: every set in
    the store; [] : none). Sets already in the table are always kept up to date for new prompts.
    `labelled_only`: only the pairs of the `pairs` table. `progress(done_prompts, total_prompts)`.
    """
    t0 = time.perf_counter()
    mode = "labelled" if labelled_only else "all"
    report = PairsReport(mode=mode)
    store.table("responses")  # "run `pairsift ingest` first"
    requested = _resolve(store, embeddings, logprobs, rewards)

    exists = store.has_table(TABLE) and not rebuild
    old_meta: dict = {}
    old_sets = FeatureSets()
    if exists:
        ds_old = store.dataset(TABLE)
        old_meta = features_meta(ds_old.schema)
        if old_meta.get("mode", mode) != mode:
            raise UsageError(
                f"table '{TABLE}' holds {old_meta['mode']} pairs; run `pairsift pairs` "
                f"{'with' if old_meta['mode'] == 'labelled' else 'without'} --labelled-only, or pass --rebuild"
            )
        old_sets = meta_sets(old_meta)
        for t in old_sets.tables():
            if not store.has_table(t):
                raise IntegrityError(
                    f"table '{TABLE}' has features from '{t}', which is gone: pass --rebuild to recompute without it"
                )
    sets = old_sets.union(requested)
    new_sets = sets.minus(old_sets) if exists else FeatureSets()
    report.feature_sets = {"embeddings": list(sets.embeddings), "logprobs": list(sets.logprobs), "rewards": list(sets.rewards)}

    core = ["responses"] + (["pairs"] if store.has_table("pairs") else [])
    versions = store.versions(core + sets.tables())
    labels = _labels(store, versions.get("pairs"))
    resp = (
        store.scan("responses", versions["responses"])
        .select("response_id", "prompt_id", "source", "score", "blank")
        .collect()
        .unique("response_id", keep="first")
    )
    todo = resp
    if exists:
        done_prompts = store.scan(TABLE).select("prompt_id").unique().collect()
        report.prompts_present = done_prompts.height
        todo = todo.join(done_prompts, on="prompt_id", how="anti")
    if labelled_only:
        todo = todo.join(labels.select("prompt_id").unique(), on="prompt_id", how="semi")
    if exists and not new_sets and todo.height == 0:
        # Nothing new: no commit, and no input set is read.
        report.pairs_total = store.count(TABLE)
        report.version = store.dataset(TABLE).version
        report.seconds = time.perf_counter() - t0
        return report
    # Offsets and small values only for the rows that will be read (all rows when existing pairs
    # get new columns).
    inputs = read_inputs(store, resp if new_sets else todo, sets, versions)
    todo = inputs.resp.join(todo.select("response_id"), on="response_id", how="semi") if new_sets else inputs.resp

    meta = {
        "mode": mode,
        "sets": report.feature_sets,
        "inputs": {**(old_meta.get("inputs") or {}), **_provenance(store, sets, versions)},
        "core_versions": {k: versions[k] for k in core},
    }
    schema = pair_features_schema(sets, meta)

    todo = _in_storage_order(todo, sets)
    ks = todo.group_by("prompt_id").len()
    total = ks.height
    report.prompts_single = int((ks["len"] < 2).sum())
    counts: dict[str, int] = {}

    def new_prompts() -> Iterator[pa.Table]:
        done = 0
        for rows, fetched in _prefetched(inputs, todo, sets, block_rows, block_pairs):
            tbl = block_table(inputs, rows, labels, schema, labelled_only, fetched)
            report.pairs_added += tbl.num_rows
            _count_labels(tbl, counts)
            done += rows["prompt_id"].n_unique()
            if progress:
                progress(done, total)
            yield tbl

    if rebuild or new_sets:
        # One Overwrite commit: existing rows (+ the new sets' columns), then the new prompts.
        if new_sets:
            old_cols = {f.name for f in old_sets.all_fields()}
            report.columns_added = [f.name for f in sets.all_fields() if f.name not in old_cols]
        old_rows = _with_new_columns(store, inputs, new_sets, schema) if exists else iter(())
        version = _overwrite(store, schema, itertools.chain(old_rows, new_prompts()))
    else:
        with store.writer() as w:
            if not exists:
                w.append(TABLE, schema.empty_table(), schema)  # a run with no pairs still creates it
            for tbl in new_prompts():
                w.append(TABLE, tbl, schema)
        version = w.committed.get(TABLE, store.dataset(TABLE).version)
    report.rebuilt = bool(rebuild)
    report.prompts_added = total - report.prompts_single
    report.labels = dict(sorted(counts.items()))
    report.version = version
    report.pairs_total = store.count(TABLE)
    report.seconds = time.perf_counter() - t0
    return report


def _in_storage_order(todo: pl.DataFrame, sets: FeatureSets) -> pl.DataFrame:
    """Prompts in the order their vectors (or token ids) are stored, so each block reads one range."""
    big = [f"embeddings_{e}" for e in sets.embeddings] + [f"logprobs_{lp}" for lp in sets.logprobs]
    order_col = f"off_{big[0]}" if big else None
    key = pl.col(order_col).min().over("prompt_id") if order_col else pl.col("prompt_id")
    return todo.with_columns(key.alias("__order")).sort("__order", "prompt_id", "response_id", nulls_last=True)


def _prefetched(inputs: Inputs, todo: pl.DataFrame, sets: FeatureSets, block_rows: int,
                block_pairs: int) -> Iterator[tuple[pl.DataFrame, dict]]:
    """Blocks of whole prompts with their big inputs; block i+1 is read (Lance decodes in its own
    threads) while block i is computed."""
    from concurrent.futures import ThreadPoolExecutor

    buffers = [{}, {}]
    blocks = _blocks(todo, block_rows, block_pairs)
    with ThreadPoolExecutor(1) as pool:
        nxt, slot = next(blocks, None), 0
        fut = pool.submit(fetch, inputs, nxt, sets, buffers[slot]) if nxt is not None else None
        while nxt is not None:
            rows, fetched = nxt, fut.result()
            nxt, slot = next(blocks, None), slot ^ 1
            if nxt is not None:
                fut = pool.submit(fetch, inputs, nxt, sets, buffers[slot])
            yield rows, fetched


def _count_labels(tbl: pa.Table, counts: dict[str, int]) -> None:
    """Add a block's pairs by label_source (null: "none") and its ties to `counts`."""
    vc = pl.from_arrow(tbl.select(["label_source"])).to_series().fill_null("none").value_counts()
    for s, c in vc.iter_rows():
        counts[s] = counts.get(s, 0) + c
    counts["tie"] = counts.get("tie", 0) + int(np.asarray(tbl.column("tie")).sum())


def _overwrite(store: Store, schema: pa.Schema, tables: Iterator[pa.Table]) -> int:
    """Replace the table's rows and schema in one Overwrite commit.

    Each table is written as data files as it comes (bounded memory); nothing is visible until
    the commit. Tables are materialised before Lance sees them: a generator that itself calls
    Lance (take) must not run inside Lance's writer.
    """
    import lance

    uri = store.table_uri(TABLE)
    read_version = store.dataset(TABLE).version if store.has_table(TABLE) else None
    fragments = []
    for tbl in tables:
        if tbl.num_rows:
            fragments += lance.fragment.write_fragments(
                tbl.cast(schema), uri, schema=schema, mode="overwrite", max_rows_per_file=1 << 22,
                storage_options=store.storage_options,
            )
    ds = lance.LanceDataset.commit(
        uri, lance.LanceOperation.Overwrite(schema, fragments), read_version=read_version,
        storage_options=store.storage_options,
    )
    return ds.version


def _with_new_columns(store: Store, inputs: Inputs, new: FeatureSets, schema: pa.Schema) -> Iterator[pa.Table]:
    """The existing rows, batch by batch, with the columns of the `new` sets added."""
    index = inputs.resp.select(
        "response_id", *[c for c in inputs.resp.columns if c.startswith(("off_", "logp_", "reward_"))]
    )
    for batch in store.dataset(TABLE).to_batches(batch_size=262_144):
        tbl = pa.Table.from_batches([batch])
        pairs = pl.from_arrow(tbl.select(["a_id", "b_id"]))
        ids = pl.concat([pairs["a_id"], pairs["b_id"]]).unique().sort().to_frame("response_id")
        rows = ids.join(index, on="response_id", how="left", maintain_order="left")
        pos = pl.DataFrame({"response_id": rows["response_id"], "__r": np.arange(rows.height, dtype=np.int64)})
        a = pairs.join(pos.rename({"response_id": "a_id"}), on="a_id", how="left", maintain_order="left")
        b = pairs.join(pos.rename({"response_id": "b_id"}), on="b_id", how="left", maintain_order="left")
        cols = features(inputs, rows, new, a["__r"].to_numpy(), b["__r"].to_numpy())
        for name, arr in cols.items():
            tbl = tbl.append_column(name, arr)
        tbl = tbl.drop_columns([c for c in tbl.column_names if c.startswith("dcrm_")])
        yield with_dcrm(tbl, inputs.sets).select(schema.names)

