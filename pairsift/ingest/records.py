"""The normalised record every reader produces, and the builder that batches it into Arrow.

A reader turns one source record (a JSONL line, a Parquet row) into one *record*: a prompt, its
responses, and the labelled pairs among them (as indices into the responses). The builder hashes
the ids once, while the strings are at hand, and emits Arrow record batches of ``RECORD`` so the
pipeline can split, dedup and write them with vectorised code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import pyarrow as pa

from ..store import ids
from ..store.schema import MESSAGES


class Response(NamedTuple):
    text: str
    source: str | None = None
    score: float | None = None
    messages: list[dict] | None = None
    meta: str | None = None  # JSON object or None


RESPONSE = pa.struct(
    [
        pa.field("response_id", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("messages", MESSAGES),
        pa.field("source", pa.string()),
        pa.field("score", pa.float64()),
        pa.field("blank", pa.bool_(), nullable=False),
        pa.field("meta", pa.string()),
    ]
)
PAIR = pa.struct(
    [
        pa.field("pair_id", pa.string(), nullable=False),
        pa.field("chosen_id", pa.string(), nullable=False),
        pa.field("rejected_id", pa.string(), nullable=False),
        pa.field("meta", pa.string()),  # JSON object of pair-level fields (e.g. SHP's score_ratio)
    ]
)
RECORD = pa.schema(
    [
        pa.field("line", pa.int64(), nullable=False),
        pa.field("prompt_id", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("prompt_messages", MESSAGES),
        pa.field("split", pa.string()),  # null: the ingest's --split
        pa.field("meta", pa.string()),
        pa.field("responses", pa.list_(RESPONSE)),
        pa.field("pairs", pa.list_(PAIR)),
        # Responses of this record merged into an earlier identical one (same prompt and text).
        pa.field("merged_duplicates", pa.int32(), nullable=False),
    ]
)


def render_messages(messages: Sequence[dict]) -> str:
    """A plain, deterministic text rendering of a chat, for display and embedding."""
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)


class RecordBuilder:
    """Accumulate records column by column; ``flush()`` returns one ``RECORD`` batch.

    ``full`` turns true once ``batch_responses`` responses are buffered, which bounds memory
    independently of how many responses each record carries.
    """

    def __init__(self, batch_responses: int = 65_536):
        self.batch_responses = batch_responses
        self._reset()

    def _reset(self) -> None:
        self._line: list[int] = []
        self._pid: list[str] = []
        self._prompt: list[str] = []
        self._pmsg: list = []
        self._split: list = []
        self._meta: list = []
        self._merged: list[int] = []
        self._r_off = [0]
        self._r = ([], [], [], [], [], [], [])  # id, text, messages, source, score, blank, meta
        self._p_off = [0]
        self._p = ([], [], [], [])  # pair_id, chosen_id, rejected_id, meta

    def __len__(self) -> int:
        return len(self._line)

    @property
    def full(self) -> bool:
        return len(self._r[0]) >= self.batch_responses

    def add(
        self,
        line: int,
        prompt: str,
        responses: Sequence[Response],
        pairs: Sequence[tuple[int, int] | tuple[int, int, str | None]] = (),
        *,
        messages: list[dict] | None = None,
        split: str | None = None,
        meta: str | None = None,
    ) -> None:
        """Add one record. `pairs` are (chosen, rejected[, meta JSON]) indices into `responses`.

        The caller has validated the record. Identical responses within the record are merged
        into the first (their source and score are kept in its meta under "duplicates").
        """
        pid = ids.prompt_id(prompt, messages)
        rid_list: list[str] = []
        first: dict[str, int] = {}
        dups: dict[int, list[dict]] = {}
        r_id, r_text, r_msg, r_src, r_score, r_blank, r_meta = self._r
        for r in responses:
            rid = ids.response_id(pid, r.text, r.messages)
            rid_list.append(rid)
            if rid in first:
                dups.setdefault(first[rid], []).append({"source": r.source, "score": r.score})
                continue
            first[rid] = len(r_id)
            r_id.append(rid)
            r_text.append(r.text)
            r_msg.append(r.messages)
            r_src.append(r.source)
            r_score.append(r.score)
            r_blank.append(not r.text.strip())
            r_meta.append(r.meta)
        for pos, extra in dups.items():
            r_meta[pos] = _merge_meta(r_meta[pos], extra)
        p_id, p_c, p_r, p_meta = self._p
        for pair in pairs:
            cid, rid = rid_list[pair[0]], rid_list[pair[1]]
            p_id.append(ids.pair_id(cid, rid))
            p_c.append(cid)
            p_r.append(rid)
            p_meta.append(pair[2] if len(pair) > 2 else None)
        self._line.append(line)
        self._pid.append(pid)
        self._prompt.append(prompt)
        self._pmsg.append(messages)
        self._split.append(split)
        self._meta.append(meta)
        self._merged.append(len(responses) - len(first))
        self._r_off.append(len(r_id))
        self._p_off.append(len(p_id))

    def flush(self) -> pa.RecordBatch | None:
        if not self._line:
            return None
        r_id, r_text, r_msg, r_src, r_score, r_blank, r_meta = self._r
        responses = pa.StructArray.from_arrays(
            [
                pa.array(r_id, pa.string()),
                pa.array(r_text, pa.string()),
                pa.array(r_msg, MESSAGES),
                pa.array(r_src, pa.string()),
                pa.array(r_score, pa.float64()),
                pa.array(r_blank, pa.bool_()),
                pa.array(r_meta, pa.string()),
            ],
            fields=list(RESPONSE),
        )
        pairs = pa.StructArray.from_arrays(
            [pa.array(col, pa.string()) for col in self._p], fields=list(PAIR)
        )
        batch = pa.RecordBatch.from_arrays(
            [
                pa.array(self._line, pa.int64()),
                pa.array(self._pid, pa.string()),
                pa.array(self._prompt, pa.string()),
                pa.array(self._pmsg, MESSAGES),
                pa.array(self._split, pa.string()),
                pa.array(self._meta, pa.string()),
                pa.ListArray.from_arrays(pa.array(self._r_off, pa.int32()), responses),
                pa.ListArray.from_arrays(pa.array(self._p_off, pa.int32()), pairs),
                pa.array(self._merged, pa.int32()),
            ],
            schema=RECORD,
        )
        self._reset()
        return batch


def _merge_meta(meta: str | None, duplicates: list[dict]) -> str:
    import json

    obj = json.loads(meta) if meta else {}
    obj.setdefault("duplicates", []).extend(duplicates)
    return json.dumps(obj, ensure_ascii=False, sort_keys=True)


def finite_score(value) -> float | None:
    """A score as float, or raise ValueError with the reason (callers turn it into InvalidRecord)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"score must be a number, got {type(value).__name__} {value!r:.40}")
    try:
        f = float(value)
    except OverflowError:
        raise ValueError(f"score is out of range for a 64-bit float ({len(str(value))} digits)") from None
    if not math.isfinite(f):
        raise ValueError(f"score must be finite, got {value!r}")
    return f
