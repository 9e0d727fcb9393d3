"""A saved subset as a stream of preference pairs for TRL: ``prompt`` / ``chosen`` / ``rejected``.

Nothing is exported: each rank reads its own part of the subset straight from the store, in
Arrow batches, at the table versions the subset recorded when it was selected.

How a stream is read
--------------------
* The subset's members (``subset_members``) are ordered by (rank, pair_id). Each epoch draws a
  permutation of that order from ``(seed, epoch)``; shard ``k`` of ``W`` reads positions
  ``k, k+W, k+2W, ...`` of the permutation, so the shards of one epoch are disjoint and together
  hold every pair exactly once.
* Texts are fetched per chunk of ``read_batch_size`` pairs with ``LanceDataset.take`` on row
  offsets resolved once per process (an id -> offset join over the id column only); memory is
  bounded by the ids, never by the texts.
* Every Lance dataset is opened INSIDE the generator, so the stream pickles into spawned
  DataLoader workers and ``accelerate launch`` processes without carrying open handles.
* The :class:`datasets.IterableDataset` has one shard per training process. ``accelerate``
  gives shard ``k`` to process ``k`` (``IterableDataset.shard``), which is what makes each rank
  read only its own part; ``rank=``/``world_size=`` pin it explicitly.

The generator loops over epochs forever unless ``epochs`` is given, because TRL/transformers
stop on ``max_steps`` (:func:`max_steps_for`), not on the end of an iterable.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import count
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import IntegrityError, StoreError, TableNotFound, UsageError
from ..store import Store
from ..store.subsets import SubsetManifest, read_manifest
from ..store.subsets import read_members as read_member_rows

if TYPE_CHECKING:
    import datasets

# ---- the subset's members ----------------------------------------------------------------------


def read_members(store: Store, name: str) -> pl.DataFrame:
    """The subset's pairs in selection order: pair_id, prompt_id, chosen_id, rejected_id, a_id, b_id.

    If a pair appears more than once (a label import that appended rows), the labelled row wins.
    """
    if not store.has_table("subset_members"):
        raise TableNotFound(f"store {store.uri} has no table 'subset_members': run `pairsift select` first")
    cols = ["pair_id", "prompt_id", "rank", "chosen_id", "rejected_id", "a_id", "b_id"]
    table = read_member_rows(store, read_manifest(store, name), cols)
    df = pl.from_arrow(table)
    if not isinstance(df, pl.DataFrame):  # a single column comes back as a Series
        df = df.to_frame()
    return (
        df.sort(["pair_id", pl.col("chosen_id").is_null()])
        .unique("pair_id", keep="first", maintain_order=True)
        .sort(["rank", "pair_id"])
    )


def check_labelled(members: pl.DataFrame, name: str) -> None:
    """Training and eval need every pair oriented: chosen/rejected set and equal to {a_id, b_id}."""
    missing = members.filter(pl.col("chosen_id").is_null() | pl.col("rejected_id").is_null()).height
    if missing:
        raise UsageError(
            f"subset '{name}' has {missing} of {members.height} pairs without a label (no chosen/rejected): "
            "it cannot be trained or evaluated on; label them (`pairsift label serve` or `pairsift label import`), "
            "then run `pairsift label resolve`"
        )
    bad = members.filter(
        ~(
            ((pl.col("chosen_id") == pl.col("a_id")) & (pl.col("rejected_id") == pl.col("b_id")))
            | ((pl.col("chosen_id") == pl.col("b_id")) & (pl.col("rejected_id") == pl.col("a_id")))
        )
    )
    if bad.height:
        raise IntegrityError(
            f"subset '{name}': {bad.height} pairs have chosen/rejected ids that are not their a_id/b_id "
            f"(first pair_id {bad['pair_id'][0]}): re-run `pairsift label resolve`"
        )


# ---- the picklable description of a stream ------------------------------------------------------


@dataclass(frozen=True)
class StreamSpec:
    """Everything a generator needs to open the store itself (plain data: pickles into workers)."""

    uri: str
    storage_options: dict | None
    subset: str
    versions: dict = field(default_factory=dict)  # table -> version the subset recorded
    seed: int = 0
    shuffle: bool = True
    epochs: int | None = None  # None: loop forever (training); max_steps bounds it
    world_size: int = 1
    read_batch_size: int = 8192
    prompt_embeddings: str | None = None  # embeddings_<set> table of prompt vectors (RPO)
    conversational: bool | None = None  # None: conversational iff some prompt has messages
    oriented: bool = True  # False: yield a/b instead of chosen/rejected (unlabelled subsets)


def detect_world() -> tuple[int, int]:
    """(rank, world size) of this process: RANK/WORLD_SIZE, else accelerate's state, else (0, 1)."""
    if "WORLD_SIZE" in os.environ:
        return int(os.environ.get("RANK", "0")), int(os.environ["WORLD_SIZE"])
    if "accelerate" in sys.modules:  # never import accelerate just to ask
        from accelerate.state import PartialState

        if PartialState._shared_state:
            state = PartialState()
            return state.process_index, state.num_processes
    return 0, 1


def max_steps_for(n_pairs: int, epochs: float, batch_size: int, grad_accum: int = 1, world_size: int = 1) -> int:
    """Optimizer steps that consume `epochs` passes over `n_pairs` at the effective batch size.

    Effective batch = per-device batch x gradient accumulation x processes. The stream flows from
    one epoch into the next, so the last step of an epoch may hold pairs of the following one.
    """
    if n_pairs <= 0:
        raise UsageError("the subset is empty: nothing to train on")
    effective = batch_size * grad_accum * world_size
    return max(1, math.ceil(epochs * n_pairs / effective))


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """Positions of the members in the order epoch `epoch` reads them (the same in every process)."""
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    return np.random.default_rng(np.random.SeedSequence([seed, epoch])).permutation(n)


# ---- reading texts by row offset ------------------------------------------------------------------


class SubsetReader:
    """Resolves a subset's ids to row offsets once, then reads any chunk of pairs as Arrow.

    Build it inside the process that iterates (it holds open Lance datasets).
    """

    def __init__(self, spec: StreamSpec) -> None:
        import lance

        self.spec = spec
        store = Store(spec.uri, spec.storage_options)
        members = read_members(store, spec.subset)
        if spec.oriented:
            check_labelled(members, spec.subset)
            first, second = "chosen_id", "rejected_id"
        else:
            first, second = "a_id", "b_id"
        self.n = members.height
        self.pair_id = members["pair_id"].to_arrow()
        self.prompt_id = members["prompt_id"].to_arrow()

        def open_table(name: str):
            if not store.has_table(name):
                raise TableNotFound(f"store {store.uri} has no table '{name}': run `pairsift ingest` first")
            return lance.dataset(
                store.table_uri(name), version=spec.versions.get(name), storage_options=spec.storage_options
            )

        self.responses = open_table("responses")
        self.prompts = open_table("prompts")
        resp_off = _offsets(self.responses, "response_id", "responses", spec)
        self.first_off = _lookup(resp_off, members[first], "responses", spec)
        self.second_off = _lookup(resp_off, members[second], "responses", spec)

        prompt_off = _offsets(self.prompts, "prompt_id", "prompts", spec, with_messages=True)
        self.prompt_off = _lookup(prompt_off, members["prompt_id"], "prompts", spec)
        if spec.conversational is None:
            has_messages = prompt_off["has_messages"].to_numpy()
            self.conversational = bool(self.n) and bool(has_messages[self.prompt_off].any())
        else:
            self.conversational = spec.conversational

        self.embeddings = None
        if spec.prompt_embeddings:
            table = f"embeddings_{spec.prompt_embeddings}"
            if not store.has_table(table):
                raise TableNotFound(
                    f"store {store.uri} has no table '{table}': embed the prompts first "
                    f"(`pairsift embed --target prompts --name {spec.prompt_embeddings}`)"
                )
            self.embeddings = open_table(table)
            emb_off = _offsets(self.embeddings, "id", table, spec, what="prompts")
            self.emb_off = _lookup(emb_off, members["prompt_id"], table, spec, hint="embed the prompts first")

    # -- one chunk ------------------------------------------------------------------------------

    def read(self, idx: np.ndarray) -> pa.Table:
        """Rows for member positions `idx` (in that order): pair_id, prompt_id, prompt, chosen, rejected
        (or a, b when not oriented), plus prompt_emb when embeddings were requested."""
        idx = np.asarray(idx, dtype=np.int64)
        conv = self.conversational
        resp_cols = ["text", "messages"] if conv else ["text"]
        first, second = self.first_off[idx], self.second_off[idx]
        resp = _take(self.responses, np.concatenate([first, second]), resp_cols)
        prm = _take(self.prompts, self.prompt_off[idx], ["text", "messages"] if conv else ["text"])
        n = len(idx)
        a, b = resp.slice(0, n), resp.slice(n, n)
        names = ("chosen", "rejected") if self.spec.oriented else ("a", "b")
        cols = {
            "pair_id": self.pair_id.take(idx),
            "prompt_id": self.prompt_id.take(idx),
            "prompt": _as_messages(prm, "user") if conv else prm.column("text"),
            names[0]: _as_messages(a, "assistant") if conv else a.column("text"),
            names[1]: _as_messages(b, "assistant") if conv else b.column("text"),
        }
        if self.embeddings is not None:
            vec = _take(self.embeddings, self.emb_off[idx], ["vector"]).column("vector")
            if vec.null_count:
                raise StoreError(
                    f"subset '{self.spec.subset}': {vec.null_count} prompts have a null vector in "
                    f"'embeddings_{self.spec.prompt_embeddings}' (not embeddable); RPO needs every prompt embedded"
                )
            cols["prompt_emb"] = vec
        return pa.table(cols)


def _offsets(ds: Any, key: str, table: str, spec: StreamSpec, with_messages: bool = False, what: str = "") -> pl.DataFrame:
    """key -> row offset of the dataset (only the id column is read)."""
    columns = {key: key}
    if with_messages:
        columns["has_messages"] = "messages IS NOT NULL"
    t = ds.to_table(columns=columns)
    df = pl.from_arrow(t)
    return df.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("__off")).rename({key: "__key"})


def _lookup(offsets: pl.DataFrame, ids: pl.Series, table: str, spec: StreamSpec, hint: str = "") -> np.ndarray:
    keys = pl.DataFrame({"__key": ids.cast(pl.String)}).with_row_index("__pos")
    joined = keys.join(offsets.select("__key", "__off"), on="__key", how="left").sort("__pos")
    off = joined["__off"]
    if off.null_count():
        version = spec.versions.get(table, "latest")
        first = joined.filter(pl.col("__off").is_null())["__key"][0]
        raise StoreError(
            f"subset '{spec.subset}' references {off.null_count()} ids missing from table '{table}' "
            f"at version {version} (first: {first}){': ' + hint if hint else ''}"
        )
    return off.to_numpy().astype(np.int64)


def _take(ds: Any, offsets: np.ndarray, columns: list[str]) -> pa.Table:
    """Rows at `offsets` (any order, repeats allowed), reading each distinct row once in file order."""
    uniq, inverse = np.unique(offsets, return_inverse=True)
    table = ds.take(uniq, columns=columns)
    return table.take(pa.array(inverse.astype(np.int64)))


def _as_messages(table: pa.Table, role: str) -> pa.Array:
    """The `messages` column, with plain-text rows wrapped as one message of `role`."""
    messages = table.column("messages").combine_chunks()
    text = table.column("text").combine_chunks()
    if messages.null_count == 0:
        return messages
    wrapped = pa.ListArray.from_arrays(
        pa.array(np.arange(len(text) + 1, dtype=np.int32)),
        pa.StructArray.from_arrays([pa.array([role] * len(text), pa.string()), text], ["role", "content"]),
    )
    return pc.if_else(messages.is_null(), wrapped.cast(messages.type), messages)


# ---- the generator and the datasets.IterableDataset ------------------------------------------------


def iter_chunks(spec: StreamSpec, shard: int, reader: SubsetReader | None = None) -> Iterator[pa.Table]:
    """Arrow chunks of shard `shard` of `spec.world_size`, epoch after epoch."""
    reader = reader or SubsetReader(spec)
    epochs = count() if spec.epochs is None else range(spec.epochs)
    for epoch in epochs:
        mine = epoch_order(reader.n, spec.seed, epoch, spec.shuffle)[shard :: spec.world_size]
        if not len(mine):
            if spec.epochs is None:
                raise UsageError(
                    f"subset '{spec.subset}' has {reader.n} pairs: fewer than the {spec.world_size} processes"
                )
            continue
        for start in range(0, len(mine), spec.read_batch_size):
            yield reader.read(mine[start : start + spec.read_batch_size])


def _rows(spec: StreamSpec, shards: list[int]) -> Iterator[tuple[str, dict]]:
    """Generator body of the IterableDataset: opens the store here, in the iterating process.

    Rows are built per Arrow chunk (one ``to_pylist`` per column) and are already of the
    declared feature types, so datasets' per-example encoding is skipped (``_TypedRows``).
    """
    reader = SubsetReader(spec)
    for shard in shards:
        for i, chunk in enumerate(iter_chunks(spec, shard, reader)):
            names = chunk.column_names
            columns = [chunk.column(name).to_pylist() for name in names]
            for j, values in enumerate(zip(*columns)):
                yield f"{shard}_{i}_{j}", dict(zip(names, values))


def _typed_rows_class():
    """datasets' generator iterable, declared typed: our rows already match the features, and
    re-encoding each example costs about half the stream's time. Shard/shuffle keep the type.
    (datasets internals: pinned to datasets 5.2 in pyproject.)"""
    from datasets.iterable_dataset import ExamplesIterable

    class TypedRows(ExamplesIterable):
        @property
        def is_typed(self) -> bool:
            return True

        @staticmethod
        def _retype(ex):
            return TypedRows(ex.generate_examples_fn, ex.kwargs, ex.generate_more_kwargs_fn)

        def shard_data_sources(self, num_shards, index, contiguous=True):
            return self._retype(super().shard_data_sources(num_shards, index, contiguous=contiguous))

        def shuffle_data_sources(self, generator):
            return self._retype(super().shuffle_data_sources(generator))

        def reshard_data_sources(self):
            return self._retype(super().reshard_data_sources())

    TypedRows.__module__ = __name__
    TypedRows.__qualname__ = "_TypedRows"
    return TypedRows


def __getattr__(name: str):
    # The class is built on first use (no datasets import at module load) yet pickles by name.
    if name == "_TypedRows":
        cls = _typed_rows_class()
        globals()["_TypedRows"] = cls
        return cls
    raise AttributeError(name)


def _features(spec: StreamSpec, conversational: bool):
    import datasets

    msg = [{"role": datasets.Value("string"), "content": datasets.Value("string")}]
    text = msg if conversational else datasets.Value("string")
    a, b = ("chosen", "rejected") if spec.oriented else ("a", "b")
    feats = {
        "pair_id": datasets.Value("string"),
        "prompt_id": datasets.Value("string"),
        "prompt": text,
        a: text,
        b: text,
    }
    if spec.prompt_embeddings:
        feats["prompt_emb"] = datasets.List(datasets.Value("float32"))
    return datasets.Features(feats)


def make_spec(
    store: Store,
    subset: str | SubsetManifest,
    *,
    seed: int = 0,
    shuffle: bool = True,
    epochs: int | None = None,
    world_size: int = 1,
    read_batch_size: int = 8192,
    prompt_embeddings: str | None = None,
    conversational: bool | None = None,
    oriented: bool = True,
) -> StreamSpec:
    info = subset if isinstance(subset, SubsetManifest) else read_manifest(store, subset)
    if oriented and not info.labelled:
        # The manifest flag is advisory (label import may update members only); members decide.
        check_labelled(read_members(store, info.name), info.name)
    if read_batch_size < 1:
        raise UsageError("read_batch_size must be >= 1")
    return StreamSpec(
        uri=store.uri,
        storage_options=store.storage_options,
        subset=info.name,
        versions=dict(info.store_versions),
        seed=seed,
        shuffle=shuffle,
        epochs=epochs,
        world_size=world_size,
        read_batch_size=read_batch_size,
        prompt_embeddings=prompt_embeddings,
        conversational=conversational,
        oriented=oriented,
    )


def subset_stream(
    store: Store,
    subset: str,
    *,
    seed: int = 0,
    shuffle: bool = True,
    epochs: int | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    read_batch_size: int = 8192,
    prompt_embeddings: str | None = None,
    conversational: bool | None = None,
) -> datasets.IterableDataset:
    """The subset as a :class:`datasets.IterableDataset` of ``prompt``/``chosen``/``rejected`` rows.

    Rows also carry ``pair_id`` and ``prompt_id`` (and ``prompt_emb`` with `prompt_embeddings`).
    With `rank` given, the dataset is that rank's shard only; otherwise it has one shard per
    process (``world_size``, default :func:`detect_world`) for ``accelerate`` to hand out.
    `epochs=None` loops forever: bound training with :func:`max_steps_for`.
    """
    import datasets

    if world_size is None:
        world_size = detect_world()[1]
    if world_size < 1 or (rank is not None and not 0 <= rank < world_size):
        raise UsageError(f"rank {rank} / world size {world_size}: need 0 <= rank < world_size")
    spec = make_spec(
        store,
        subset,
        seed=seed,
        shuffle=shuffle,
        epochs=epochs,
        world_size=world_size,
        read_batch_size=read_batch_size,
        prompt_embeddings=prompt_embeddings,
        conversational=conversational,
    )
    conv = conversational if conversational is not None else SubsetReader(spec).conversational
    shards = [rank] if rank is not None else list(range(world_size))
    # One shard per process: a list in the kwargs is what datasets (and accelerate) split.
    source = __getattr__("_TypedRows")(_rows, {"spec": spec, "shards": shards})
    return datasets.IterableDataset(source, info=datasets.DatasetInfo(features=_features(spec, conv)))


def subset_table(store: Store, subset: str, *, oriented: bool = True, **kwargs: Any) -> pa.Table:
    """The whole subset as one Arrow table in selection order (for eval, stability, baselines)."""
    spec = make_spec(store, subset, shuffle=False, epochs=1, oriented=oriented, **kwargs)
    reader = SubsetReader(spec)
    if reader.n == 0:
        return pa.table({})
    return reader.read(np.arange(reader.n))
