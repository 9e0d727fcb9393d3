"""Ingest: reader → dedup by content id → one atomic commit per table.

The reader streams ``RECORD`` batches (see :mod:`pairsift.ingest.records`); each batch is split
into prompt, response and pair rows with Arrow compute and staged in a
:class:`~pairsift.store.Writer`, which drops rows whose id is already in the store (or earlier in
this run) and, at commit, rows another job committed meanwhile. Memory is bounded by one batch
plus 8 bytes per id seen. Nothing is committed until the input has been read to the end: the
first invalid record (without ``skip_invalid``) leaves the store exactly as it was.

The input is only ever opened for reading; the ``skip_invalid`` file is opened when the first
invalid record arrives, and may not be the input itself.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InvalidRecord, UsageError
from ..store import CORE_TABLES, PAIRS, PROMPTS, RESPONSES, Store

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
    # For each table: rows added; rows already in the store before this ingest (or committed
    # by another job while it ran); rows that repeat an earlier row of this input.
    prompts_added: int = 0
    prompts_present: int = 0
    prompts_repeated: int = 0
    responses_added: int = 0
    responses_present: int = 0
    responses_repeated: int = 0
    responses_merged: int = 0  # identical responses to one prompt within a record, merged
    blank_responses: int = 0  # empty or whitespace-only responses added (kept, flagged)
    pairs_added: int = 0
    pairs_present: int = 0
    pairs_repeated: int = 0
    prompts_without_responses: int = 0  # records with an empty response list (stored, no pair)
    first_without_responses: int | None = None  # the line of the first one
    rejects_path: str | None = None
    versions: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        def seen(present: int, repeated: int, *more: str) -> str:
            parts = [f"{present:,} already in the store"] if present or not repeated else []
            if repeated:
                parts.append(f"{repeated:,} repeated in this input")
            return "(" + ", ".join(parts + list(more)) + ")"

        lines = [
            f"{self.path}: format {self.format} ({self.format_reason})",
            f"dataset {self.dataset}, split {self.split}: {_plural(self.records, 'record')} in {self.seconds:.1f} s",
            f"prompts   +{self.prompts_added:,} {seen(self.prompts_present, self.prompts_repeated)}",
            f"responses +{self.responses_added:,} "
            + seen(
                self.responses_present,
                self.responses_repeated,
                f"{self.responses_merged:,} identical within a record merged",
                f"{self.blank_responses:,} blank kept and flagged",
            ),
            f"pairs     +{self.pairs_added:,} {seen(self.pairs_present, self.pairs_repeated)}",
        ]
        if self.prompts_without_responses:
            lines.append(
                f"note      {_plural(self.prompts_without_responses, 'record')} with no responses "
                f"(first at line {self.first_without_responses}): prompts stored, nothing to pair"
            )
        if self.rejects_path is not None:
            lines.append(f"rejected  {_plural(self.rejected, 'invalid record')} -> {self.rejects_path}")
        return "\n".join(lines)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


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
    if not (path.is_dir() or stat.S_ISREG(path.stat().st_mode)):
        raise UsageError(f"{path}: not a regular file or folder (a FIFO, socket or device cannot be ingested)")
    rejects = _Rejects(Path(skip_invalid), path) if skip_invalid is not None else None
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

    on_invalid = rejects.add if rejects is not None else None
    try:
        with store.writer() as writer:
            for name, schema in CORE_TABLES.items():  # stage in commit order
                writer.stage(name, schema)
            reader = READERS[format](path, on_invalid=on_invalid, batch_responses=batch_responses, **options)
            for batch in reader:
                _add_batch(batch, writer, report)
                if progress is not None:
                    progress(report.records, report.responses_added + report.responses_present + report.responses_repeated)
        # What was committed: staged rows less those another job committed first (present).
        for name in CORE_TABLES:
            st = writer.stage(name)
            setattr(report, f"{name}_added", st.rows)
            setattr(report, f"{name}_present", getattr(report, f"{name}_present") + st.raced)
    finally:
        if rejects is not None:
            rejects.close()
            report.rejected = rejects.count
            report.rejects_path = str(rejects.path) if rejects.count else None
    report.versions = store.versions(CORE_TABLES)
    report.seconds = time.perf_counter() - start
    return report


def _count(report: IngestReport, name: str, added) -> None:
    setattr(report, f"{name}_added", getattr(report, f"{name}_added") + added.rows)
    setattr(report, f"{name}_present", getattr(report, f"{name}_present") + added.present)
    setattr(report, f"{name}_repeated", getattr(report, f"{name}_repeated") + added.repeated)


def _add_batch(batch: pa.RecordBatch, writer, report: IngestReport) -> None:
    n = batch.num_rows
    report.records += n
    report.responses_merged += pc.sum(batch.column("merged_duplicates")).as_py() or 0
    prompt_id = batch.column("prompt_id")
    lengths = pc.list_value_length(batch.column("responses")).fill_null(0)
    empty = np.flatnonzero(lengths.to_numpy(zero_copy_only=False) == 0)
    if len(empty):
        if report.first_without_responses is None:
            report.first_without_responses = int(batch.column("line")[int(empty[0])].as_py())
        report.prompts_without_responses += len(empty)

    # Responses: flatten the list column; each row inherits its record's prompt_id.
    responses = batch.column("responses")
    flat = pc.list_flatten(responses)
    parent = pc.list_parent_indices(responses)
    rows = pa.Table.from_arrays(
        [flat.field(name) if name != "prompt_id" else prompt_id.take(parent) for name in RESPONSES.names],
        schema=RESPONSES,
    )
    added = writer.append("responses", rows)
    _count(report, "responses", added)
    blank = rows.column("blank") if added.kept is None else rows.column("blank").filter(pa.array(added.kept))
    report.blank_responses += pc.sum(blank).as_py() or 0

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
    _count(report, "pairs", writer.append("pairs", rows))

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
    _count(report, "prompts", writer.append("prompts", rows))


class _Rejects:
    """The --skip-invalid file: one JSON object per rejected record, with its reason.

    Checked before anything is read: it may not be the input (nor inside an input folder), and
    its folder must exist. The file itself is created when the first invalid record arrives.
    """

    def __init__(self, path: Path, source: Path):
        self.path = path
        self.count = 0
        self._fh = None
        target = path.expanduser().resolve()
        src = source.expanduser().resolve()
        if target == src or (path.exists() and source.exists() and os.path.samefile(path, source)):
            raise UsageError(f"--skip-invalid {path}: that is the input file; give another path for the rejects")
        if src.is_dir() and src in target.parents:
            raise UsageError(f"--skip-invalid {path}: inside the input folder {source}; give a path outside it")
        if target.is_dir():
            raise UsageError(f"--skip-invalid {path}: is a folder; give a file path for the rejects")
        if not target.parent.is_dir():
            raise UsageError(f"--skip-invalid {path}: folder {target.parent} does not exist")
        if not os.access(target.parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
            raise UsageError(f"--skip-invalid {path}: not writable")

    def add(self, err: InvalidRecord, raw) -> None:
        if self._fh is None:
            try:
                self._fh = open(self.path, "w", encoding="utf-8")
            except OSError as e:
                raise UsageError(f"--skip-invalid {self.path}: cannot write the rejects file: {e.strerror or e}") from None
        self.count += 1
        row = err.to_dict()
        row["message"] = err.message
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", "backslashreplace")
        row["record"] = raw
        try:
            self._fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        except OSError as e:
            raise UsageError(f"--skip-invalid {self.path}: cannot write the rejects file: {e.strerror or e}") from None

    def close(self) -> None:
        if self._fh is not None:
            try:
                self._fh.close()
            except OSError as e:
                raise UsageError(f"--skip-invalid {self.path}: cannot write the rejects file: {e.strerror or e}") from None
