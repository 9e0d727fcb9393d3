"""Ingest: reader → dedup by content id → one atomic commit per table.

The reader streams ``RECORD`` batches (see :mod:`pairsift.ingest.records`); each batch is split
into prompt, response and pair rows with Arrow compute, rows whose id is already in the store (or
earlier in this run) are dropped, and the rest are staged in a :class:`~pairsift.store.Writer`.
Memory is bounded by one batch plus 8 bytes per id seen. Nothing is committed until the input
has been read to the end: the first invalid record (without ``skip_invalid``) leaves the store
exactly as it was.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InvalidRecord, UsageError
from ..store import CORE_TABLES, PAIRS, PROMPTS, RESPONSES, Store
from ..store.ids import SeenKeys, id_keys

SPLIT_NAMES = {"train", "test", "validation", "valid", "val", "dev", "eval", "evaluation"}
_SUFFIXES = (".jsonl.gz", ".jsonl", ".json", ".parquet")


@dataclass
class IngestReport:
    """What an ingest read, added, skipped and rejected."""

    path: str
    format: str
    format_reason: str
    dataset: str
    split: str
    records: int = 0
    rejected: int = 0
    prompts_added: int = 0
    prompts_present: int = 0
    responses_added: int = 0
    responses_present: int = 0
    responses_merged: int = 0  # identical responses to one prompt within a record, merged
    blank_responses: int = 0  # empty or whitespace-only responses added (kept, flagged)
    pairs_added: int = 0
    pairs_present: int = 0
    rejects_path: str | None = None
    versions: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        lines = [
            f"{self.path}: format {self.format} ({self.format_reason})",
            f"dataset {self.dataset}, split {self.split}: {self.records:,} records in {self.seconds:.1f} s",
            f"prompts   +{self.prompts_added:,} ({self.prompts_present:,} already present)",
            f"responses +{self.responses_added:,} ({self.responses_present:,} already present, "
            f"{self.responses_merged:,} duplicates merged, {self.blank_responses:,} blank kept and flagged)",
            f"pairs     +{self.pairs_added:,} ({self.pairs_present:,} already present)",
        ]
        if self.rejects_path is not None:
            lines.append(f"rejected  {self.rejected:,} invalid records -> {self.rejects_path}")
        return "\n".join(lines)


def default_names(path: str | Path) -> tuple[str, str]:
    """(dataset, split) guessed from a path: ``hh-rlhf/test.jsonl.gz`` -> ("hh-rlhf", "test")."""
    p = Path(path)
    stem = p.name
    for suffix in _SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    if stem.lower() in SPLIT_NAMES and p.parent.name:
        return p.parent.name, stem.lower()
    return stem, "train"


def ingest(
    store: Store,
    path: str | Path,
    format: str = "auto",
    *,
    dataset: str | None = None,
    split: str | None = None,
    skip_invalid: str | Path | None = None,
    reader_options: dict | None = None,
    batch_responses: int = 65_536,
    progress: Callable[[int, int], None] | None = None,
) -> IngestReport:
    """Ingest one corpus file or folder into `store`.

    `format` is a reader name (``hh``, ``pairs``, ``multi``, ``shp``) or ``auto``. With
    `skip_invalid`, invalid records are written to that JSONL file with their reason and the
    valid ones are ingested; without it the first invalid record raises
    :class:`~pairsift.errors.InvalidRecord` and nothing is written. `progress(records, responses)`
    is called after each batch.
    """
    from .readers import READERS, detect_format

    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    options = dict(reader_options or {})
    if format == "auto":
        format, detected, reason = detect_format(path)
        options = {**detected, **options}
    elif format in READERS:
        reason = "given"
    else:
        raise UsageError(f"--format must be one of auto, {', '.join(sorted(READERS))}; got {format!r}")
    if format != "multi" and options:
        flags = ", ".join("--" + k.replace("_", "-") for k in options)
        raise UsageError(f"{flags} only apply to --format multi, not {format}")
    guessed_dataset, guessed_split = default_names(path)
    report = IngestReport(
        path=str(path),
        format=format + (f"/{options['preset']}" if options.get("preset") else ""),
        format_reason=reason,
        dataset=dataset or guessed_dataset,
        split=split or guessed_split,
    )
    start = time.perf_counter()
    seen = {name: SeenKeys(_existing_keys(store, name)) for name in CORE_TABLES}

    rejects = _Rejects(Path(skip_invalid)) if skip_invalid is not None else None
    on_invalid = rejects.add if rejects is not None else None
    try:
        with store.writer() as writer:
            for name, schema in CORE_TABLES.items():  # stage in commit order
                writer.append(name, schema.empty_table(), schema)
            reader = READERS[format](path, on_invalid=on_invalid, batch_responses=batch_responses, **options)
            for batch in reader:
                _add_batch(batch, writer, seen, report)
                if progress is not None:
                    progress(report.records, report.responses_added + report.responses_present)
    finally:
        if rejects is not None:
            rejects.close()
            report.rejected, report.rejects_path = rejects.count, str(rejects.path)
    report.versions = store.versions(CORE_TABLES)
    report.seconds = time.perf_counter() - start
    return report


def _existing_keys(store: Store, name: str) -> np.ndarray | None:
    if not store.has_table(name):
        return None
    key = CORE_TABLES[name].names[0]
    ids = store.dataset(name).to_table(columns=[key]).column(key)
    return id_keys(ids)


def _add_batch(batch: pa.RecordBatch, writer, seen: dict[str, SeenKeys], report: IngestReport) -> None:
    n = batch.num_rows
    report.records += n
    report.responses_merged += pc.sum(batch.column("merged_duplicates")).as_py() or 0
    prompt_id = batch.column("prompt_id")

    # Responses: flatten the list column; each row inherits its record's prompt_id.
    responses = batch.column("responses")
    flat = pc.list_flatten(responses)
    parent = pc.list_parent_indices(responses)
    rows = pa.Table.from_arrays(
        [flat.field(name) if name != "prompt_id" else prompt_id.take(parent) for name in RESPONSES.names],
        schema=RESPONSES,
    )
    keep = seen["responses"].novel(id_keys(rows.column("response_id")))
    report.responses_present += len(keep) - int(keep.sum())
    rows = rows.filter(pa.array(keep))
    report.responses_added += rows.num_rows
    report.blank_responses += pc.sum(rows.column("blank")).as_py() or 0
    writer.append("responses", rows)

    pairs = batch.column("pairs")
    flat = pc.list_flatten(pairs)
    rows = pa.Table.from_arrays(
        [
            flat.field("pair_id"),
            prompt_id.take(pc.list_parent_indices(pairs)),
            flat.field("chosen_id"),
            flat.field("rejected_id"),
            pa.repeat(pa.scalar("dataset"), len(flat)),
            flat.field("meta"),
        ],
        schema=PAIRS,
    )
    keep = seen["pairs"].novel(id_keys(rows.column("pair_id")))
    report.pairs_present += len(keep) - int(keep.sum())
    rows = rows.filter(pa.array(keep))
    report.pairs_added += rows.num_rows
    writer.append("pairs", rows)

    split = pc.fill_null(batch.column("split"), report.split)
    rows = pa.Table.from_arrays(
        [
            prompt_id,
            batch.column("prompt"),
            batch.column("prompt_messages"),
            pa.repeat(pa.scalar(report.dataset), n),
            split,
            batch.column("meta"),
        ],
        schema=PROMPTS,
    )
    keep = seen["prompts"].novel(id_keys(prompt_id))
    report.prompts_present += n - int(keep.sum())
    rows = rows.filter(pa.array(keep))
    report.prompts_added += rows.num_rows
    writer.append("prompts", rows)


class _Rejects:
    """The --skip-invalid file: one JSON object per rejected record, with its reason."""

    def __init__(self, path: Path):
        self.path = path
        self.count = 0
        self._fh = open(path, "w", encoding="utf-8")

    def add(self, err: InvalidRecord, raw) -> None:
        self.count += 1
        row = err.to_dict()
        row["message"] = err.message
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", "backslashreplace")
        row["record"] = raw
        self._fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")

    def close(self) -> None:
        self._fh.close()
