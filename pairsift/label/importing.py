"""`pairsift label import`: annotations made outside pairsift, into the ``labels`` table.

Accepted files (``format="auto"`` tells them apart by suffix and content):

- **rows** — JSONL, a JSON array, or CSV with a header: ``pair_id`` and either ``label`` /
  ``choice`` (``a``, ``b``, ``tie``, ``both bad``, ``skip``; a and b are ``response_a`` /
  ``response_b`` as exported) or ``chosen_id`` (the preferred response's id; both given must
  agree). Optional: ``annotator``, ``rationale``, ``seconds``.
- **argilla** — records exported from Argilla (``dataset.records.to_json``, or JSONL of
  ``to_list()`` dicts, nested or flattened) for a dataset made from ``pairsift label export
  --format argilla``.
- **label-studio** — Label Studio's JSON export of tasks made from ``pairsift label export
  --format label-studio``.

Each label's annotator comes from the file (a column, the Argilla user id, the Label Studio
user) or from ``annotator=``; the option wins when both are given. Every row is validated
against the subset before anything is written, the first problem is reported as
``FILE:LINE: field 'X': problem`` (a file that is not UTF-8 text included). Then the new labels
are written in ONE keyed commit (a crash leaves the table as it was or with every new row), and
the labels the file corrects (same annotator, pair and round, another choice or rationale) in one
more commit, an update of those rows: a crash between the two leaves the new labels without the
corrections, and importing the file again completes it.

Idempotent: a label's id is the hash of (subset, pair, annotator, round), where round is that
annotator's current round for the pair (0 if none), so re-importing a file adds nothing and a
corrected file overwrites the labels it changes. Importing records labels only; `pairsift label
resolve` turns them into orientations.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import polars as pl

from ..errors import InvalidRecord, UsageError
from ..store import Store
from . import formats, hooks
from .formats import Parsed
from .table import (
    VOTES,
    effective,
    insert_new,
    label_id,
    now,
    parse_choice,
    read,
    rows_table,
    update_existing,
)

FORMATS = ("auto", "rows", "argilla", "label-studio")
#: Annotator names: also URL path segments of the web page, hence the narrow alphabet.
ANNOTATOR_RE = r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}$"


@dataclass
class ImportReport:
    subset: str
    path: str
    format: str
    rows: int = 0
    new: int = 0  # labels not in the table before
    changed: int = 0  # labels the file overwrote (another choice or rationale)
    unchanged: int = 0  # already there as given (a re-import)
    annotators: list[str] = field(default_factory=list)
    choices: dict[str, int] = field(default_factory=dict)
    pairs: int = 0  # pairs in the subset
    unlabelled_left: int = 0  # pairs of the subset with no vote (a/b/tie/both bad) from anyone
    version: int | None = None  # labels table version written (None: nothing to write)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        by = ", ".join(f"{k} {v:,}" for k, v in self.choices.items()) or "none"
        left = ("every pair has a label" if not self.unlabelled_left
                else f"{self.unlabelled_left:,} of {self.pairs:,} pairs still unlabelled")
        return (
            f"'{self.subset}': {self.rows:,} labels read from {self.path} ({self.format}; {by}) by "
            f"{len(self.annotators)} annotator(s): {self.new:,} new, {self.changed:,} changed, "
            f"{self.unchanged:,} already there; {left}. Run `pairsift label resolve {self.subset}` "
            "to orient the pairs."
        )


# ---- reading files ---------------------------------------------------------------------------


def read_text(path: Path) -> str:
    """The file as text; not UTF-8 -> one error naming the line of the first bad byte."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise InvalidRecord(
            str(path), line, None, f"not UTF-8 text (byte 0x{raw[e.start]:02x}); save the file as UTF-8"
        ) from None


def _json_lines(path: Path, text: str) -> Iterator[tuple[int, dict]]:
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise InvalidRecord(str(path), line_no, None, f"not valid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise InvalidRecord(str(path), line_no, None, "expected a JSON object")
        yield line_no, obj


def _json_array(path: Path, text: str) -> list:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidRecord(str(path), e.lineno, None, f"not valid JSON ({e.msg})") from None
    if not isinstance(obj, list):
        raise InvalidRecord(str(path), 1, None, "expected a JSON array of records")
    return obj


def _csv_rows(path: Path, text: str) -> Iterator[tuple[int, dict]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames or "pair_id" not in reader.fieldnames:
        raise InvalidRecord(str(path), 1, "pair_id", "the CSV header needs a pair_id column")
    for row in reader:
        yield reader.line_num, {k: (v if v != "" else None) for k, v in row.items() if k is not None}


def _rows(records: Iterator[tuple[int | None, dict]], where: str = "") -> Iterator[Parsed]:
    for line, obj in records:
        label = obj.get("label", obj.get("choice"))
        yield Parsed(line, obj.get("pair_id"), label, obj.get("chosen_id"), obj.get("annotator"),
                     obj.get("rationale"), obj.get("seconds"), where.format(line) if where else "")


def parse_file(path: Path, format: str = "auto") -> tuple[str, list[Parsed]]:
    """(format used, labels) of an annotation file."""
    if format not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}; got {format!r}")
    if not path.exists():
        raise UsageError(f"label file {path} does not exist")
    if not path.is_file():
        raise UsageError(f"label file {path} is not a regular file")
    text = read_text(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        if format not in ("auto", "rows"):
            raise UsageError(f"{path}: a CSV file holds rows, not {format} records")
        return "rows", list(_rows(_csv_rows(path, text)))
    if text.lstrip().startswith("["):
        records = [(None, r) for r in _json_array(path, text)]
    else:
        records = list(_json_lines(path, text))
    kind = format if format != "auto" else formats.detect([r for _, r in records[:1]])
    if kind == "rows":
        if records and records[0][0] is None:  # a JSON array: name records by position
            return kind, list(_rows(((i, r) for i, (_, r) in enumerate(records, 1)), where="record {}"))
        return kind, list(_rows(iter(records)))
    parse = formats.parse_argilla if kind == "argilla" else formats.parse_label_studio
    out = []
    for i, (line, rec) in enumerate(records, 1):
        if not isinstance(rec, dict):
            raise InvalidRecord(str(path), line, None, f"record {i}: expected a JSON object")
        where = f"record {i}" if line is None else ""
        for p in parse(rec):
            p.line, p.where = line, where
            out.append(p)
    return kind, out


# ---- validation ----------------------------------------------------------------------------------


def _fail(path: Path, p: Parsed, fld: str | None, problem: str) -> InvalidRecord:
    return InvalidRecord(str(path), p.line, fld, f"{p.where}: {problem}" if p.where else problem)


def validate(path: Path, parsed: list[Parsed], members: dict[str, tuple[str, str]], annotator: str | None) -> list[dict]:
    """Check every label against the subset's {pair_id: (a_id, b_id)}; return clean dicts."""
    import re

    name_re = re.compile(ANNOTATOR_RE)
    if annotator is not None and not name_re.match(annotator):
        raise UsageError(f"--annotator {annotator!r}: 1-64 letters, digits and . _ @ + - (starting with a letter or digit)")
    out, first = [], {}
    for p in parsed:
        pid = p.pair_id
        if not isinstance(pid, str) or not pid:
            raise _fail(path, p, "pair_id", "missing or not a string")
        if pid not in members:
            raise _fail(path, p, "pair_id", f"{pid!r} is not a pair of this subset")
        who = annotator if annotator is not None else p.annotator
        if who is None:
            raise _fail(path, p, "annotator", "missing: add an annotator column or pass --annotator NAME")
        who = str(who)
        if not name_re.match(who):
            raise _fail(path, p, "annotator", f"{who!r}: use 1-64 letters, digits and . _ @ + -")
        key = (pid, who)
        if key in first:
            raise _fail(path, p, "pair_id", f"{pid!r} is labelled twice by {who!r} (first at {first[key]})")
        a, b = members[pid]
        choice = None
        if p.label is not None:
            choice = parse_choice(p.label)
            if choice is None:
                raise _fail(path, p, "label", f"must be a, b, tie, both bad or skip; got {p.label!r}")
        if p.chosen_id is not None:
            if p.chosen_id not in (a, b):
                raise _fail(path, p, "chosen_id", f"{p.chosen_id!r} is neither response of pair {pid}")
            by_id = "a" if p.chosen_id == a else "b"
            if choice is not None and choice != by_id:
                raise _fail(path, p, "chosen_id", f"disagrees with label {p.label!r}")
            choice = by_id
        if choice is None:
            raise _fail(path, p, "label", "give label (a, b, tie, both bad, skip) or chosen_id")
        rationale = p.rationale
        if rationale is not None and not isinstance(rationale, str):
            raise _fail(path, p, "rationale", "must be text")
        seconds = p.seconds
        if seconds is not None:
            try:
                seconds = float(seconds)
            except (TypeError, ValueError):
                raise _fail(path, p, "seconds", f"must be a number, got {seconds!r}") from None
            if not 0 <= seconds < 1e9:
                raise _fail(path, p, "seconds", f"must be >= 0, got {seconds!r}")
        first[key] = f"line {p.line}" if p.line is not None else p.where
        out.append({"pair_id": pid, "annotator": who, "choice": choice,
                    "rationale": rationale or None, "seconds": seconds})
    return out


# ---- the public entry point ------------------------------------------------------------------


def import_labels(
    store: Store, subset: str, path: str | Path, *, annotator: str | None = None, format: str = "auto"
) -> ImportReport:
    """Write the labels of an annotation file for subset `subset` into ``labels`` (one commit)."""
    from ..select.subsets import load_subset

    path = Path(path)
    _, members_tbl = load_subset(store, subset)
    members = {r["pair_id"]: (r["a_id"], r["b_id"]) for r in members_tbl.select(["pair_id", "a_id", "b_id"]).to_pylist()}
    kind, parsed = parse_file(path, format)
    labels = validate(path, parsed, members, annotator)
    origin = {"rows": "file"}.get(kind, kind)
    report = ImportReport(subset, str(path), kind, rows=len(labels), pairs=len(members))

    existing = read(store, subset, [r["pair_id"] for r in labels]) if labels else None
    rounds: dict[tuple[str, str], dict] = {}
    if existing is not None and existing.height:
        for row in existing.sort("round").iter_rows(named=True):
            rounds[(row["pair_id"], row["annotator"])] = row  # the highest round wins
    stamp = now()
    new, changed = [], []
    for r in labels:
        old = rounds.get((r["pair_id"], r["annotator"]))
        rnd = old["round"] if old is not None else 0
        row = {**r, "label_id": label_id(subset, r["pair_id"], r["annotator"], rnd), "subset": subset,
               "round": rnd, "left": old["left"] if old is not None else None, "origin": origin,
               "created_at": stamp, "undone_at": None}
        if old is None:
            report.new += 1
            new.append(row)
        elif (old["choice"], old["rationale"], old["undone_at"]) == (r["choice"], r["rationale"], None):
            report.unchanged += 1
        else:
            report.changed += 1
            changed.append(row)
    if new:
        report.version = insert_new(store, rows_table(new))
        if changed:
            hooks.committed("label-import:new")
    if changed:
        report.version = update_existing(store, rows_table(changed))
    if new or changed:
        hooks.committed("label-import")
    report.annotators = sorted({r["annotator"] for r in labels})
    counts = pl.Series([r["choice"] for r in labels], dtype=pl.String).value_counts(sort=True)
    report.choices = {k: int(v) for k, v in counts.iter_rows()}
    voted = effective(read(store, subset)).filter(pl.col("choice").is_in(VOTES))["pair_id"].n_unique()
    report.unlabelled_left = len(members) - voted
    return report
