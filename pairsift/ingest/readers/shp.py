"""Stanford Human Preferences (SHP, SHP-2): a Reddit/StackExchange post and two human comments.

``history`` is the prompt; ``human_ref_A`` / ``human_ref_B`` are the responses (source
``"human"``, score = ``score_A`` / ``score_B``, the comments' net upvotes), and ``labels``
orients the pair (1: A preferred, 0: B preferred). The prompt's meta keeps ``post_id``,
``domain``, ``upvote_ratio``, ``created_at`` and any unmapped field; each response's meta keeps
its comment id (``c_root_id_A`` / ``c_root_id_B``). ``seconds_difference`` and ``score_ratio``
describe the pair, not the post, so they travel with the pair: they are kept in the ``pairs``
row's meta (a prompt shared by several SHP rows keeps the meta of its first row only).
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from ...store import dumps_meta
from ..records import RecordBuilder, Response
from .base import Bad, OnInvalid, drive, req_str, score, wrong

_KNOWN = frozenset(
    {
        "history",
        "human_ref_A",
        "human_ref_B",
        "labels",
        "score_A",
        "score_B",
        "c_root_id_A",
        "c_root_id_B",
        "seconds_difference",
        "score_ratio",
    }
)
#: Fields that describe the pair, not the post: kept in the pair's meta.
_PAIR_FIELDS = ("seconds_difference", "score_ratio")


def read_shp(
    path, *, on_invalid: OnInvalid | None = None, batch_responses: int = 65_536
) -> Iterator[pa.RecordBatch]:
    """Stream SHP rows from `path` as ``RECORD`` batches (one labelled pair each)."""
    return drive(path, _parse, on_invalid, batch_responses)


def _score(rec: dict, key: str) -> float:
    v = rec.get(key)
    if v is None:
        raise Bad(key, wrong(rec, key, v, "a number"))
    return score(v, key)


def _parse(builder: RecordBuilder, line: int, rec: dict, split: str | None) -> None:
    post_id = rec.get("post_id")
    if post_id is None or isinstance(post_id, (dict, list, bool)):
        raise Bad("post_id", wrong(rec, "post_id", post_id, "a string"))
    history = req_str(rec, "history")
    a = req_str(rec, "human_ref_A")
    b = req_str(rec, "human_ref_B")
    labels = rec.get("labels")
    if type(labels) is not int or labels not in (0, 1):
        if "labels" not in rec:
            raise Bad("labels", "missing")
        raise Bad("labels", f"must be 0 or 1 (1: A preferred), got {labels!r}")
    if a == b:
        problem = "identical to 'human_ref_A' (a pair needs two different responses)"
        raise Bad("human_ref_B", problem)
    sa, sb = _score(rec, "score_A"), _score(rec, "score_B")
    ca, cb = rec.get("c_root_id_A"), rec.get("c_root_id_B")
    responses = (
        Response(a, "human", sa, None, dumps_meta({"c_root_id": ca}) if ca is not None else None),
        Response(b, "human", sb, None, dumps_meta({"c_root_id": cb}) if cb is not None else None),
    )
    meta = dumps_meta({k: v for k, v in rec.items() if k not in _KNOWN})
    pair_meta = dumps_meta({k: rec[k] for k in _PAIR_FIELDS if rec.get(k) is not None})
    pair = (0, 1, pair_meta) if labels == 1 else (1, 0, pair_meta)
    builder.add(line, history, responses, (pair,), split=split, meta=meta)
