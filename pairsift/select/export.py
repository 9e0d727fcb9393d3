"""Export a subset for training (TRL preference format) or for annotation.

A labelled subset (every pair oriented) exports TRL's columns ``prompt``, ``chosen``,
``rejected``: plain strings, or conversational message lists when the prompt was ingested with
messages (a plain prompt then becomes one user message, a plain response one assistant
message, so the column has one type). An unlabelled subset exports ``response_a`` /
``response_b`` for annotators instead, blind (texts and ids only, unless ``reveal``);
`pairsift label import` reads their labels back.
Every labelled row also carries the ids, the subset's rank and score, the orientation's label source,
and every feature column of ``pair_features``. In a prompt/chosen/rejected export they are
oriented like the texts (:mod:`pairsift.select.orient`): every gap and DCRM column is
chosen-minus-rejected (its sign flipped where b is chosen), cosine and edit distances are
symmetric and unchanged, and score/source/blank become ``*_chosen``/``*_rejected``. A revealed
annotation export keeps the "a minus b" columns, with a_id/b_id saying which side is a. Texts
and features are read at the table versions the subset recorded (tagged, so they still exist),
never at whatever the store holds now. A Hugging Face folder gets a dataset card (README.md,
:mod:`pairsift.select.card`) with the selection manifest.

The export streams, so its memory does not grow with the subset: the members are ordered by rank
from their rank column alone (16 bytes each), then read :data:`BATCH_ROWS` at a time, and each
batch's prompt, texts and features are taken by row offset through id indexes
(:class:`~pairsift.store.lookup.RowsById`, 16 bytes per row of ``prompts``, ``responses`` and
``pair_features``) and written before the next batch is read: JSONL appended line by line,
Parquet one row group per batch, an HF ``save_to_disk`` folder as Arrow shards written with
`datasets`' own writer. Rows, order and values are those of the whole-frame export this
replaced (JSONL byte for byte). The output is written under a temporary name and moved into
place at the end, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import TableNotFound, UsageError, require
from ..store.lookup import RowsById
from ..store.subsets import read_manifest
from .card import write_dataset_card
from .orient import oriented
from .subsets import _check_name

FORMATS = ("jsonl", "parquet", "hf")
#: Members per batch: what an export holds (with their texts) while it writes. A Lance `take`
#: costs about as much for 8k rows as for 32k (per-column overhead), hence not smaller.
BATCH_ROWS = 16384
# pair_features columns the member row already says better (orientation) or repeats (ids).
_NOT_FEATURES = {"pair_id", "prompt_id", "a_id", "b_id", "label", "label_source", "orientable"}
#: Member columns written, in this order, after the texts.
ID_COLUMNS = ["prompt_id", "pair_id", "a_id", "b_id", "chosen_id", "rejected_id", "label_source", "rank", "score"]
#: What a blind export (unlabelled, for annotators) keeps of them: no score, rank or source.
BLIND_ID_COLUMNS = ["prompt_id", "pair_id", "a_id", "b_id"]


@dataclass
class ExportReport:
    subset: str
    path: str
    format: str
    rows: int
    labelled: bool
    conversational: bool
    columns: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def guess_format(out: str | Path) -> str:
    p = Path(out)
    name = p.name.lower()
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    if p.is_dir() or not p.suffix:
        return "hf"
    raise UsageError(f"cannot tell the format of {out!r} from its suffix: use .jsonl, .parquet, a folder, or --format")


# ---- which columns an export writes ---------------------------------------------------------------


def export_columns(labelled: bool, conversational: bool, features: list[str],
                   ids: list[str] = ID_COLUMNS) -> list[pl.Expr]:
    """The columns of an exported row, in order, over a batch of joined member rows.

    The joined rows have the member columns (:data:`ID_COLUMNS`), ``p_text``/``p_msgs``,
    ``a_text``/``a_msgs``, ``b_text``/``b_msgs`` and the `features` of ``pair_features``.
    Labelled: ``prompt, chosen, rejected``; unlabelled: ``prompt, response_a, response_b``; then
    the ids, rank, score and every feature.
    """
    if conversational:
        prompt = _as_messages("p_msgs", "p_text", "user")
        a, b = _as_messages("a_msgs", "a_text", "assistant"), _as_messages("b_msgs", "b_text", "assistant")
    else:
        prompt, a, b = pl.col("p_text"), pl.col("a_text"), pl.col("b_text")
    a_chosen = pl.col("chosen_id") == pl.col("a_id")
    if labelled:
        texts = [
            prompt.alias("prompt"),
            pl.when(a_chosen).then(a).otherwise(b).alias("chosen"),
            pl.when(a_chosen).then(b).otherwise(a).alias("rejected"),
        ]
    else:
        texts = [prompt.alias("prompt"), a.alias("response_a"), b.alias("response_b")]
    a_sign = pl.when(a_chosen).then(1).otherwise(-1)
    # Oriented rows get oriented features: gaps chosen-minus-rejected, per-side columns *_chosen/*_rejected.
    feats = oriented(features, a_sign) if labelled else [pl.col(c) for c in features]
    return [*texts, *(pl.col(c) for c in ids), *feats]


def _as_messages(msgs: str, text: str, role: str) -> pl.Expr:
    one = pl.concat_list(pl.struct(role=pl.lit(role), content=pl.col(text)))
    return pl.when(pl.col(msgs).is_null()).then(one).otherwise(pl.col(msgs))


# ---- reading a subset in batches ------------------------------------------------------------------


@dataclass
class _Plan:
    """What an export needs before it writes its first row."""

    name: str
    members: object  # the subset_members Lance dataset
    member_columns: list[str]
    order: np.ndarray  # row offsets of the subset's members in rank order
    versions: dict
    labelled: bool
    conversational: bool
    features: list[str]
    ids: list[str]


def _dataset(store, table: str, versions: dict):
    if table not in versions:
        raise TableNotFound(f"subset did not record a version of table '{table}'; re-run `pairsift select`")
    return store.dataset(table, version=versions[table])


def _plan(store, name: str, reveal: bool = False, batch_rows: int = 1 << 18) -> _Plan:
    _check_name(name)
    manifest = read_manifest(store, name)
    versions = manifest.store_versions
    members = store.dataset("subset_members")
    with_run = "run" in members.schema.names
    offsets, ranks, unlabelled, base = [], [], 0, 0
    cols = ["subset", "rank", "chosen_id", *(["run"] if with_run else [])]
    for batch in members.to_batches(columns=cols, batch_size=batch_rows):
        mine = pc.equal(batch.column(0), name)
        if with_run:  # only the run the manifest names (an orphan run a crash left is not the subset)
            run = batch.column(3)
            mine = pc.and_(mine, pc.is_null(run) if manifest.run is None else pc.equal(run, manifest.run))
        hit = np.flatnonzero(mine.to_numpy(zero_copy_only=False))
        offsets.append(hit + base)
        ranks.append(batch.column(1).to_numpy(zero_copy_only=False)[hit])
        unlabelled += batch.column(2).take(pa.array(hit)).null_count
        base += batch.num_rows
    offsets = np.concatenate(offsets) if offsets else np.empty(0, np.int64)
    ranks = np.concatenate(ranks) if ranks else np.empty(0, np.int64)
    order = offsets[np.argsort(ranks, kind="stable")]
    feats = _dataset(store, "pair_features", versions)
    labelled = bool(manifest.labelled) and unlabelled == 0
    features = [f.name for f in feats.schema if f.name not in _NOT_FEATURES] if labelled or reveal else []
    return _Plan(
        name=name,
        members=members,
        member_columns=[f.name for f in members.schema if f.name not in ("subset", "run")],
        order=order,
        versions=versions,
        labelled=labelled,
        conversational=_conversational(store, versions, members, order, batch_rows),
        features=features,
        ids=ID_COLUMNS if labelled or reveal else BLIND_ID_COLUMNS,
    )


def _conversational(store, versions: dict, members, order: np.ndarray, batch_rows: int) -> bool:
    """Whether any member's prompt has chat messages (decides the text columns' type for every row)."""
    prompts = _dataset(store, "prompts", versions)
    n = prompts.count_rows()
    with_messages = n - sum(b.column(0).null_count for b in prompts.to_batches(columns=["messages"]))
    if not len(order) or with_messages == 0:
        return False
    if with_messages == n:
        return True
    index = RowsById(prompts, "prompt_id")
    for start in range(0, len(order), batch_rows):
        ids = _take(members, order[start : start + batch_rows], ["prompt_id"]).column(0)
        msgs = index.take(ids, ["messages"]).column(0)
        if msgs.null_count < len(msgs):
            return True
    return False


def _take(ds, offsets: np.ndarray, columns: list[str]) -> pa.Table:
    """Rows at `offsets`, in that order (each distinct row read once, in file order)."""
    if not len(offsets):
        return ds.schema.empty_table().select(columns)
    uniq, inverse = np.unique(offsets, return_inverse=True)
    return ds.take(uniq, columns=columns).take(pa.array(inverse.astype(np.int64)))


def _batches(store, plan: _Plan, batch_rows: int) -> Iterator[pl.DataFrame]:
    """The subset's joined rows (members, texts, features) in rank order, `batch_rows` at a time."""
    prompts = RowsById(_dataset(store, "prompts", plan.versions), "prompt_id")
    responses = RowsById(_dataset(store, "responses", plan.versions), "response_id")
    feats = RowsById(_dataset(store, "pair_features", plan.versions), "pair_id")
    for start in range(0, max(len(plan.order), 1), batch_rows):
        m = _take(plan.members, plan.order[start : start + batch_rows], plan.member_columns)
        n = m.num_rows
        p = prompts.take(m.column("prompt_id"), ["text", "messages"])
        r = responses.take(pa.concat_arrays([m.column("a_id").combine_chunks(), m.column("b_id").combine_chunks()]),
                           ["text", "messages"])
        f = feats.take(m.column("pair_id"), plan.features)
        cols = {c: m.column(c) for c in m.column_names}
        cols.update(p_text=p.column("text"), p_msgs=p.column("messages"),
                    a_text=r.column("text").slice(0, n), a_msgs=r.column("messages").slice(0, n),
                    b_text=r.column("text").slice(n, n), b_msgs=r.column("messages").slice(n, n))
        cols.update({c: f.column(c) for c in plan.features})
        yield pl.from_arrow(pa.table(cols))


def _missing(df: pl.DataFrame) -> pl.DataFrame:
    return df.filter(pl.col("a_text").is_null() | pl.col("b_text").is_null() | pl.col("p_text").is_null())


# ---- writers: one batch at a time, into a temporary path moved into place at the end -------------


class _Output:
    def __init__(self, out: Path):
        self.out = out
        self.tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")

    def commit(self) -> None:
        self.close()
        if self.out.is_dir() and not self.out.is_symlink():
            shutil.rmtree(self.out)
        os.replace(self.tmp, self.out)

    def discard(self) -> None:
        try:
            self.close()
        finally:
            if self.tmp.is_dir():
                shutil.rmtree(self.tmp, ignore_errors=True)
            else:
                self.tmp.unlink(missing_ok=True)

    def close(self) -> None: ...


class _Jsonl(_Output):
    def __init__(self, out: Path):
        super().__init__(out)
        self.fh = open(self.tmp, "wb")  # noqa: SIM115 - closed by close()

    def write(self, df: pl.DataFrame) -> None:
        df.write_ndjson(self.fh)

    def close(self) -> None:
        self.fh.close()


class _Parquet(_Output):
    def __init__(self, out: Path):
        super().__init__(out)
        self.writer = None

    def write(self, df: pl.DataFrame) -> None:
        import pyarrow.parquet as pq

        table = df.to_arrow()
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.tmp, table.schema, compression="zstd")
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class _HfFolder(_Output):
    """A `datasets` ``save_to_disk`` folder: Arrow shards of at most ~500 MB written with
    `datasets`' own ArrowWriter, then ``state.json`` and ``dataset_info.json`` as save_to_disk
    writes them, so ``datasets.load_from_disk`` reads it."""

    def __init__(self, out: Path):
        super().__init__(out)
        self.datasets = require("datasets", "train")
        self.tmp.mkdir(parents=True)
        self.features = None
        self.writer = None
        self.shards: list[Path] = []
        self.shard_bytes = 0

    def write(self, df: pl.DataFrame) -> None:
        from datasets import config
        from datasets.arrow_writer import ArrowWriter
        from datasets.utils.py_utils import convert_file_size_to_int

        table = df.to_arrow()
        if self.features is None:
            self.features = self.datasets.Features.from_arrow_schema(table.schema)
        if table.schema != self.features.arrow_schema:  # as Dataset(table) does
            table = table.cast(self.features.arrow_schema)
        if self.writer is not None and self.shard_bytes >= convert_file_size_to_int(config.MAX_SHARD_SIZE):
            self._finish_shard()
        if self.writer is None:
            self.shards.append(self.tmp / f"shard-{len(self.shards):05d}.arrow")
            self.writer = ArrowWriter(features=self.features, path=str(self.shards[-1]), embed_local_files=True)
            self.shard_bytes = 0
        self.writer.write_table(table)
        self.shard_bytes += table.nbytes

    def _finish_shard(self) -> None:
        self.writer.finalize()
        self.writer.close()
        self.writer = None

    def close(self) -> None:
        if self.writer is not None:
            self._finish_shard()
        if self.features is None or (self.tmp / "state.json").exists():
            return
        from datasets import config
        from datasets.fingerprint import generate_random_fingerprint

        n = len(self.shards)
        names = [f"data-{i:05d}-of-{n:05d}.arrow" for i in range(n)]
        for shard, final in zip(self.shards, names):
            shard.rename(self.tmp / final)
        state = {
            "_data_files": [{"filename": f} for f in names],
            "_fingerprint": generate_random_fingerprint(),
            "_format_columns": None,
            "_format_kwargs": {},
            "_format_type": None,
            "_output_all_columns": False,
            "_split": None,
        }
        with open(self.tmp / config.DATASET_STATE_JSON_FILENAME, "w", encoding="utf-8") as f:
            json.dump(state, f, indent=2, sort_keys=True)
        info = asdict(self.datasets.DatasetInfo(features=self.features))
        with open(self.tmp / config.DATASET_INFO_FILENAME, "w", encoding="utf-8") as f:
            json.dump({k: info[k] for k in sorted(info)}, f, indent=2)


_WRITERS = {"jsonl": _Jsonl, "parquet": _Parquet, "hf": _HfFolder}


def export(store, name: str, out: str | Path, format: str | None = None, reveal: bool = False,
           batch_rows: int | None = None) -> ExportReport:
    """Write subset `name` to `out` as JSONL, Parquet or an HF ``save_to_disk`` folder, streamed in
    batches of `batch_rows` members (default :data:`BATCH_ROWS`)."""
    fmt = format or guess_format(out)
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    plan = _plan(store, name, reveal)
    columns = export_columns(plan.labelled, plan.conversational, plan.features, plan.ids)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = _WRITERS[fmt](out)
    rows, names, missing, example = 0, [], 0, None
    try:
        for df in _batches(store, plan, batch_rows or BATCH_ROWS):
            bad = _missing(df)
            if bad.height or missing:  # keep counting, write nothing more
                missing += bad.height
                example = example or (bad["pair_id"][0] if bad.height else None)
                continue
            df = df.select(columns)
            names = df.columns
            writer.write(df)
            rows += df.height
        if missing:
            raise TableNotFound(
                f"subset '{name}': texts of {missing} pairs are missing from responses/prompts at the "
                f"recorded versions (e.g. pair {example})"
            )
        if fmt == "hf":  # the card goes in before the folder is moved into place
            writer.close()
            hint = f"from datasets import load_from_disk\nds = load_from_disk({str(out)!r})"
            write_dataset_card(writer.tmp, store, name, rows=rows, columns=names, labelled=plan.labelled,
                               load_hint=hint)
        writer.commit()
    except BaseException:
        writer.discard()
        raise
    return ExportReport(name, str(out), fmt, rows, plan.labelled, plan.conversational, names)
