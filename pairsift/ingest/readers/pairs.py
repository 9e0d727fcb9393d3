"""Generic labelled pairs: ``prompt`` / ``chosen`` / ``rejected`` (TRL's preference formats).

Standard format: all three are strings. Conversational format: lists of ``{"role", "content"}``
messages; a message-list prompt is stored with its messages and a plain rendering as text, and
a message-list completion's text is its messages' contents joined by a blank line. Optional
``score_chosen`` / ``score_rejected`` become the responses' scores; every other top-level field
goes into the prompt's meta.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from ...store import dumps_meta
from ..records import RecordBuilder, Response
from .base import Bad, OnInvalid, drive, extras, messages, prompt_of, score, wrong

_PAIR = ((0, 1),)
_KNOWN = frozenset({"prompt", "chosen", "rejected", "score_chosen", "score_rejected"})


def read_pairs(
    path, *, on_invalid: OnInvalid | None = None, batch_responses: int = 65_536
) -> Iterator[pa.RecordBatch]:
    """Stream prompt/chosen/rejected records from `path` as ``RECORD`` batches."""
    return drive(path, _parse, on_invalid, batch_responses)


def _completion(rec: dict, key: str, score_key: str) -> Response:
    v = rec.get(key)
    s = score(rec.get(score_key), score_key)
    if type(v) is str:
        return Response(v, None, s)
    if type(v) is list:
        msgs = messages(v, key)
        return Response("\n\n".join(m["content"] for m in msgs), None, s, msgs)
    raise Bad(key, wrong(rec, key, v, "a string or a list of chat messages"))


def _parse(builder: RecordBuilder, line: int, rec: dict, split: str | None) -> None:
    prompt, prompt_messages = prompt_of(rec, "prompt")
    chosen = _completion(rec, "chosen", "score_chosen")
    rejected = _completion(rec, "rejected", "score_rejected")
    if chosen.text == rejected.text and chosen.messages == rejected.messages:
        raise Bad("rejected", "identical to 'chosen' (a pair needs two different responses)")
    meta = dumps_meta(extras(rec, _KNOWN)) if len(rec) > 3 else None
    builder.add(
        line, prompt, (chosen, rejected), _PAIR, messages=prompt_messages, split=split, meta=meta
    )

