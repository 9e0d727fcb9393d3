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
appended in one keyed compare-and-swap commit (a concurrent run's rows for the same prompts are
dropped, never duplicated); with nothing new it commits nothing and reads no input set. A
feature set that appears later (a new embedding set, log-prob or reward name) adds its columns,
and the DCRM columns it enables, to every existing row with Lance's ``merge_columns`` and one
``Merge`` commit (which cannot land on top of a concurrent change: the run starts over), then
the new prompts are appended. Labels that arrive after their pairs were built (the `pairs` table
changed since) re-orient the rows they cover (precedence annotator > dataset > score) with one
merge-insert. ``rebuild=True`` recomputes everything in one Overwrite commit, the only one; a
commit it replaced is recomputed right after. An interrupted run leaves the table as it was, or
with the steps before the interruption done (each is a complete state).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa

from ..errors import IntegrityError, TableNotFound, UsageError
from ..report import plural
from ..store import Store, TableStage
from ..store.commit import backoff, committed, create_table, write_error
from ..store.schema import (
    FEATURES_META_KEY,
    FeatureSets,
    features_meta,
    meta_sets,
    pair_features_schema,
)
from ..store.schema import PAIR_FEATURES as TABLE
from ..store.schema import provenance as read_provenance
from ..store.writer import LayoutChanged
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

#: Which label of a pair wins when several sources label it (the score orients only pairs with no
#: label at all): an annotator's over the dataset's.
LABEL_PRECEDENCE = ("annotator", "dataset")


def _labels(store: Store, version: int | None) -> pl.DataFrame:
    """The labelled pairs as (a_id, b_id, prompt_id, label, label_source), label = +1 if a chosen.

    The `pairs` table may label a pair several times (the dataset, later annotators): the source
    highest in :data:`LABEL_PRECEDENCE` wins (other sources rank after those, by name). A pair its
    winning source labels both ways (two datasets disagree) gets a null label and label_source
    "conflict".
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
    rank = {s: i for i, s in enumerate(LABEL_PRECEDENCE)}
    p = p.with_columns(
        pl.min_horizontal("chosen_id", "rejected_id").alias("a_id"),
        pl.max_horizontal("chosen_id", "rejected_id").alias("b_id"),
        pl.when(pl.col("chosen_id") < pl.col("rejected_id")).then(1).otherwise(-1).cast(pl.Int8).alias("label"),
        pl.col("label_source").replace_strict(rank, default=len(rank), return_dtype=pl.Int32).alias("__rank"),
    ).filter(pl.col("a_id") != pl.col("b_id"))
    best = p.group_by("a_id", "b_id").agg(pl.col("__rank").min(), pl.col("label_source").filter(
        pl.col("__rank") == pl.col("__rank").min()).min().alias("__src"))
    p = p.join(best, on=["a_id", "b_id", "__rank"], how="semi").join(
        best.select("a_id", "b_id", "__src"), on=["a_id", "b_id"]
    ).filter(pl.col("label_source") == pl.col("__src"))
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
    A concurrent `pairs` run that changes the table's columns makes this one start over (at
    most :data:`ATTEMPTS` times).
    """
    for attempt in range(ATTEMPTS):
        try:
            return _build(store, labelled_only, embeddings, logprobs, rewards, rebuild, block_rows, block_pairs,
                          progress)
        except LayoutChanged:
            if attempt == ATTEMPTS - 1:
                raise
            backoff(attempt)
    raise AssertionError("unreachable")


#: How many times `build_pairs` starts over when another run changed the table under it.
ATTEMPTS = 5


def _build(store, labelled_only, embeddings, logprobs, rewards, rebuild, block_rows, block_pairs, progress):
    t0 = time.perf_counter()
    mode = "labelled" if labelled_only else "all"
    report = PairsReport(mode=mode)
    store.table("responses")  # "run `pairsift ingest` first"
    requested = _resolve(store, embeddings, logprobs, rewards)

    ds_old = None
    if store.has_table(TABLE):
        ds_old = store.dataset(TABLE)
    exists = ds_old is not None and not rebuild
    old_meta: dict = {}
    old_sets = FeatureSets()
    if exists:
        old_meta, old_sets = existing_sets(store, ds_old.schema, mode)
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
        # Every prompt present at the version this run appends on top of (a concurrent run's
        # rows committed later are dropped at commit time, by key).
        done_prompts = store.scan(TABLE, ds_old.version).select("prompt_id").unique().collect()
        report.prompts_present = done_prompts.height
        todo = todo.join(done_prompts, on="prompt_id", how="anti")
    if labelled_only:
        todo = todo.join(labels.select("prompt_id").unique(), on="prompt_id", how="semi")
    relabel = exists and _labels_changed(old_meta, versions)
    if exists and not new_sets and todo.height == 0 and not relabel:
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
            _count_labels(tbl, counts)
            done += rows["prompt_id"].n_unique()
            if progress:
                progress(done, total)
            yield tbl

    read_version = ds_old.version if exists else 0  # 0: this run saw no table
    if rebuild:
        version = _rebuild(store, schema, new_prompts(), ds_old)
        report.pairs_added = store.count(TABLE)
    else:
        if new_sets:
            old_cols = {f.name for f in old_sets.all_fields()}
            report.columns_added = [f.name for f in sets.all_fields() if f.name not in old_cols]
            read_version = _add_columns(store, inputs, new_sets, sets, schema, ds_old)
        stage = TableStage(store, TABLE, schema, check_existing=False, version=read_version)
        if set(stage.schema.names) != set(schema.names):  # (added columns come last: order may differ)
            raise LayoutChanged(f"table '{TABLE}' has other columns than this run computes")
        for tbl in new_prompts():
            stage.add(tbl)
        version = stage.commit()
        report.pairs_added = stage.rows
        if relabel:
            version = _refresh_labels(store, labels, versions.get("pairs")) or version
        if version is None:
            version = store.dataset(TABLE).version
    report.rebuilt = bool(rebuild)
    report.prompts_added = total - report.prompts_single
    report.labels = dict(sorted(counts.items()))
    report.version = version
    report.pairs_total = store.count(TABLE)
    report.seconds = time.perf_counter() - t0
    return report


def existing_sets(store: Store, schema: pa.Schema, mode: str) -> tuple[dict, FeatureSets]:
    """(metadata, feature sets) of the existing ``pair_features`` table, checked against this run:
    the same pair mode, and every input set still in the store."""
    meta = features_meta(schema)
    if meta.get("mode", mode) != mode:
        raise UsageError(
            f"table '{TABLE}' holds {meta['mode']} pairs; run `pairsift pairs` "
            f"{'with' if meta['mode'] == 'labelled' else 'without'} --labelled-only, or pass --rebuild"
        )
    sets = meta_sets(meta)
    for t in sets.tables():
        if not store.has_table(t):
            raise IntegrityError(
                f"table '{TABLE}' has features from '{t}', which is gone: pass --rebuild to recompute without it"
            )
    return meta, sets


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


# ---- writing: every commit is keyed, compare-and-swap, or (rebuild only) checked afterwards ----


def _labels_changed(meta: dict, versions: dict[str, int]) -> bool:
    """Whether the `pairs` table changed since the table's labels were last brought up to date."""
    if "pairs" not in versions:
        return False
    seen = meta.get("labels_version", (meta.get("core_versions") or {}).get("pairs"))
    return seen != versions["pairs"]


def _refresh_labels(store: Store, labels: pl.DataFrame, pairs_version: int | None) -> int | None:
    """Re-orient existing rows whose label changed (labels that arrived after the rows were
    built, an annotator's label over the dataset's), then record the `pairs` version seen.

    One Lance merge-insert (an Update, safe beside concurrent appends) of the changed rows' three
    orientation columns; a row no label covers keeps its score orientation.
    """
    if labels.height:
        src = labels.select(
            pl.concat_str(["a_id", "b_id"]).alias("__k"), "a_id", "b_id", "label", "label_source"
        )
        cur = (
            store.scan(TABLE)
            .select("pair_id", "a_id", "b_id", "label", "label_source")
            .join(src.lazy().select("a_id", "b_id"), on=["a_id", "b_id"], how="semi")
            .collect()
        )
        changed = cur.join(src.drop("__k"), on=["a_id", "b_id"], suffix="_new").filter(
            pl.col("label").ne_missing(pl.col("label_new")) | pl.col("label_source").ne_missing(pl.col("label_source_new"))
        )
        if changed.height:
            ds = store.dataset(TABLE)
            upd = pa.table(
                {
                    "pair_id": changed["pair_id"].to_arrow().cast(pa.string()),
                    "label": changed["label_new"].to_arrow().cast(pa.int8()),
                    "label_source": changed["label_source_new"].to_arrow().cast(pa.string()),
                    "orientable": changed["label_new"].is_not_null().to_arrow(),
                }
            ).cast(pa.schema([ds.schema.field(n) for n in ("pair_id", "label", "label_source", "orientable")]))
            try:
                ds.merge_insert("pair_id").when_matched_update_all().execute(upd)
            except (OSError, ValueError, RuntimeError) as e:
                raise write_error(f"table '{TABLE}' in store {store.uri}", e) from None
            committed(f"relabel {TABLE}")
    ds = store.dataset(TABLE)
    meta = features_meta(ds.schema)
    meta["labels_version"] = pairs_version
    try:
        ds.update_schema_metadata({FEATURES_META_KEY.decode(): json.dumps(meta, sort_keys=True)})
    except (OSError, ValueError, RuntimeError) as e:
        if "onflict" not in str(e):
            raise write_error(f"table '{TABLE}' in store {store.uri}", e) from None
        return None  # a concurrent writer won: the next run refreshes again (idempotent)
    committed(f"labels version {TABLE}")
    return store.dataset(TABLE).version


def _add_columns(store: Store, inputs: Inputs, new: FeatureSets, sets: FeatureSets, schema: pa.Schema, ds) -> int:
    """Add the `new` sets' columns (and the DCRM columns they enable) to every existing row.

    Lance's own way: per fragment, the new columns are written as new data files
    (``merge_columns``) and one ``Merge`` commit on top of the version read adds them all. A
    ``Merge`` conflicts with any concurrent change, so a stale one never lands (this run starts
    over instead). Values are computed outside Lance's writer, per fragment, then handed over by
    pair_id.
    """
    import lance
    from lance.commit import CommitConflictError

    have = set(ds.schema.names)
    new_names = [f.name for f in schema if f.name not in have]
    index = inputs.resp.select(
        "response_id", *[c for c in inputs.resp.columns if c.startswith(("off_", "logp_", "reward_"))]
    )
    frags = []
    for frag in ds.get_fragments():
        tbl = frag.to_table()
        cols = _new_columns(tbl, inputs, index, new, sets, schema).select(new_names)
        values = pa.table({"pair_id": tbl.column("pair_id"), **{n: cols.column(n) for n in new_names}}).combine_chunks()

        def udf(batch: pa.RecordBatch, values=values) -> pa.RecordBatch:
            import pyarrow.compute as pc

            pos = pc.index_in(batch.column("pair_id"), values.column("pair_id"))
            # Rows deleted from the fragment (absent from `values`) get nulls: never read.
            return pa.RecordBatch.from_arrays(
                [values.column(n).chunk(0).take(pos) if values.num_rows else pa.nulls(len(pos), values.schema.field(n).type)
                 for n in new_names],
                schema=pa.schema([values.schema.field(n) for n in new_names]),
            )

        try:
            meta_frag, _ = frag.merge_columns(udf, columns=["pair_id"])
        except (OSError, ValueError, RuntimeError) as e:
            raise write_error(f"table '{TABLE}' in store {store.uri}", e) from None
        frags.append(meta_frag)
    target = pa.schema(list(ds.schema) + [schema.field(n) for n in new_names]).with_metadata(schema.metadata)
    try:
        out = lance.LanceDataset.commit(
            ds.uri, lance.LanceOperation.Merge(frags, target), read_version=ds.version,
            storage_options=store.storage_options,
        )
    except CommitConflictError as e:
        raise LayoutChanged(f"table '{TABLE}' changed while this run added columns") from e
    except (OSError, ValueError, RuntimeError) as e:
        raise write_error(f"table '{TABLE}' in store {store.uri}", e) from None
    committed(f"add columns {TABLE}")
    return out.version


def _new_columns(tbl: pa.Table, inputs: Inputs, index: pl.DataFrame, new: FeatureSets, sets: FeatureSets,
                 schema: pa.Schema) -> pa.Table:
    """Existing rows `tbl` with the columns of the `new` sets and every DCRM column."""
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
    return with_dcrm(tbl, sets).select(schema.names).cast(schema)


def _rebuild(store: Store, schema: pa.Schema, tables: Iterator[pa.Table], ds_old) -> int:
    """Replace the table (rows, columns, metadata) with `tables` in one Overwrite commit.

    `--rebuild` is the one Overwrite (a replace cannot be a compare-and-swap in Lance): if
    another commit landed between the version read and this one, it was replaced too, so the
    incremental step runs again right away and recomputes what it had added.
    """
    import lance

    uri = store.table_uri(TABLE)
    if ds_old is None:
        create_table(uri, schema, store.storage_options, f"table '{TABLE}' in store {store.uri}")
        ds_old = store.dataset(TABLE)
    fragments = []
    try:
        for tbl in tables:
            if tbl.num_rows:
                fragments += lance.fragment.write_fragments(
                    tbl.cast(schema), uri, schema=schema, mode="overwrite", max_rows_per_file=1 << 22,
                    storage_options=store.storage_options,
                )
        ds = lance.LanceDataset.commit(
            uri, lance.LanceOperation.Overwrite(schema, fragments), read_version=ds_old.version,
            storage_options=store.storage_options,
        )
    except (OSError, ValueError, RuntimeError) as e:
        raise write_error(f"table '{TABLE}' in store {store.uri}", e) from None
    committed(f"rebuild {TABLE}")
    if ds.version != ds_old.version + 1:
        build_pairs(store, labelled_only=features_meta(schema).get("mode") == "labelled")
        return store.dataset(TABLE).version
    return ds.version
