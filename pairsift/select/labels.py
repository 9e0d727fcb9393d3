"""Read annotators' labels back into a subset and orient its pairs.

The file is JSONL (one object per line) or CSV (header row), one row per pair: ``pair_id`` and
either ``label`` ("a" / "b": which of response_a / response_b, as exported, is preferred) or
``chosen_id`` (the preferred response's id); when both are given they must agree. Every row is
validated before anything is written; the first problem is reported as ``FILE:LINE: field 'X':
problem``. Labelled pairs get ``label_source = "annotator"`` in ``subset_members`` (one commit),
and the manifest's ``labelled`` flag turns true once every member is oriented.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa

from ..errors import InvalidRecord, UsageError
from ..store.schema import SUBSET_MEMBERS
from ..store.sql import equals
from .subsets import load_subset


@dataclass
class LabelReport:
    subset: str
    labelled_now: int  # pairs oriented by this file
    relabelled: int  # of those, pairs that already had an orientation
    unlabelled_left: int
    subset_labelled: bool

    def to_dict(self) -> dict:
        return asdict(self)


def _rows(path: Path):
    """(line number, dict) for each record of a JSONL or CSV file."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "pair_id" not in reader.fieldnames:
                raise InvalidRecord(str(path), 1, "pair_id", "the CSV header needs a pair_id column")
            for row in reader:
                yield reader.line_num, {k: (v if v != "" else None) for k, v in row.items()}
        return
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise InvalidRecord(str(path), line_no, None, f"not valid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise InvalidRecord(str(path), line_no, None, "expected a JSON object")
            yield line_no, obj


def read_labels(path: str | Path, members: dict[str, tuple[str, str]]) -> dict[str, str]:
    """{pair_id: chosen_id} from `path`, validated against the subset's {pair_id: (a_id, b_id)}."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"label file {path} does not exist")
    out: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for line, row in _rows(path):
        pid = row.get("pair_id")
        if not isinstance(pid, str) or not pid:
            raise InvalidRecord(str(path), line, "pair_id", "missing or not a string")
        if pid not in members:
            raise InvalidRecord(str(path), line, "pair_id", f"{pid!r} is not a pair of this subset")
        if pid in first_line:
            raise InvalidRecord(str(path), line, "pair_id", f"{pid!r} is labelled twice (first at line {first_line[pid]})")
        a, b = members[pid]
        label, chosen = row.get("label"), row.get("chosen_id")
        if label is None and chosen is None:
            raise InvalidRecord(str(path), line, "label", "give label ('a' or 'b') or chosen_id")
        by_label = None
        if label is not None:
            if not isinstance(label, str) or label.strip().lower() not in ("a", "b"):
                raise InvalidRecord(str(path), line, "label", f"must be 'a' or 'b', got {label!r}")
            by_label = a if label.strip().lower() == "a" else b
        if chosen is not None and chosen not in (a, b):
            raise InvalidRecord(str(path), line, "chosen_id", f"{chosen!r} is neither response of pair {pid}")
        if by_label is not None and chosen is not None and by_label != chosen:
            raise InvalidRecord(str(path), line, "chosen_id", f"disagrees with label {label!r}")
        out[pid] = by_label or chosen
        first_line[pid] = line
    return out


def import_labels(store, name: str, path: str | Path) -> LabelReport:
    """Orient the pairs of subset `name` from an annotation file (see the module doc)."""
    manifest, members = load_subset(store, name)
    rows = members.to_pylist()
    by_pair = {r["pair_id"]: (r["a_id"], r["b_id"]) for r in rows}
    labels = read_labels(path, by_pair)
    changed = []
    relabelled = 0
    for r in rows:
        chosen = labels.get(r["pair_id"])
        if chosen is None:
            continue
        relabelled += r["chosen_id"] is not None
        r["chosen_id"] = chosen
        r["rejected_id"] = r["b_id"] if chosen == r["a_id"] else r["a_id"]
        r["label_source"] = "annotator"
        changed.append(r)
    if changed:
        table = pa.Table.from_pylist(changed, schema=SUBSET_MEMBERS)
        (
            store.table("subset_members")
            .merge_insert(["subset", "pair_id"])
            .when_matched_update_all()
            .execute(table)
        )
    left = sum(r["chosen_id"] is None for r in rows)
    labelled = left == 0
    counts = dict(manifest["counts"])
    counts["annotated"] = counts.get("annotated", 0) + len(changed)
    store.table("subsets").update(
        where=equals("name", name),
        values={"labelled": labelled, "counts": json.dumps(counts, sort_keys=True)},
    )
    return LabelReport(name, len(changed), relabelled, left, labelled)
