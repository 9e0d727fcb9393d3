"""What every reader shares: the streaming loop, error routing and field validation.

A reader is a `parse(builder, line, record, split)` function that validates one source record
and calls ``builder.add`` exactly once, as its last step, or raises :class:`Bad`. :func:`drive`
turns it into an iterator of ``RECORD`` batches with positions on every error, so the readers
themselves hold only the mapping from a format's fields to prompts, responses and pairs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pyarrow as pa

from ...errors import InvalidRecord
from ..records import RecordBuilder, finite_score, render_messages
from ..sources import iter_records

OnInvalid = Callable[[InvalidRecord, object], None]
Parse = Callable[[RecordBuilder, int, dict, "str | None"], None]

#: The marker after which an Anthropic-style dialogue's assistant turn starts.
ASSISTANT = "\n\nAssistant:"


class Bad(Exception):
    """One field of the current record is invalid; `drive` adds the file and line."""

    def __init__(self, field: str | None, problem: str):
        super().__init__(problem)
        self.field = field
        self.problem = problem


def drive(
    path, parse: Parse, on_invalid: OnInvalid | None, batch_responses: int
) -> Iterator[pa.RecordBatch]:
    """Run `parse` over every record of `path`, yielding a batch whenever the builder is full.

    An invalid record raises its :class:`InvalidRecord`, or, when `on_invalid` is given, is
    passed to it with its raw form (line text, row dict or None) and skipped.
    """
    builder = RecordBuilder(batch_responses)
    for line, rec, raw, origin in iter_records(path):
        if type(rec) is not dict:
            _reject(rec, raw, on_invalid)
            continue
        try:
            parse(builder, line, rec, origin.split)
        except Bad as e:
            _reject(InvalidRecord(origin.path, line, e.field, e.problem), raw, on_invalid)
            continue
        if builder.full:
            yield builder.flush()
    last = builder.flush()
    if last is not None:
        yield last


def _reject(err: InvalidRecord, raw, on_invalid: OnInvalid | None) -> None:
    if on_invalid is None:
        raise err
    if isinstance(raw, str):
        raw = raw.rstrip("\r\n")
    on_invalid(err, raw)


# --- field validation (only ever on the current record; messages name the field) ------------


def jtype(v) -> str:
    """The JSON name of a value's type, for messages."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(v), type(v).__name__)


def wrong(rec: dict, key: str, value, expected: str) -> str:
    """Why `rec[key]` (= `value`) is not `expected`: missing, null, or the wrong type."""
    if key not in rec:
        return "missing"
    if value is None:
        return f"is null, expected {expected}"
    return f"must be {expected}, got {jtype(value)} {_short(value)}"


def _short(v) -> str:
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


def req_str(rec: dict, key: str, field: str | None = None) -> str:
    v = rec.get(key)
    if type(v) is str:
        return v
    raise Bad(field or key, wrong(rec, key, v, "a string"))


def score(value, field: str) -> float | None:
    """A finite float or None; a bool, string or NaN/inf is an error naming `field`."""
    try:
        return finite_score(value)
    except ValueError as e:
        raise Bad(field, str(e)) from None


def messages(value: list, field: str) -> list[dict]:
    """Validate a chat message list; returns it with only role and content kept."""
    if not value:
        raise Bad(field, "message list is empty")
    out = []
    for i, m in enumerate(value):
        if type(m) is not dict:
            problem = f"must be a message object with 'role' and 'content', got {jtype(m)}"
            raise Bad(f"{field}[{i}]", problem)
        role, content = m.get("role"), m.get("content")
        if type(role) is not str:
            raise Bad(f"{field}[{i}].role", wrong(m, "role", role, "a string"))
        if type(content) is not str:
            raise Bad(f"{field}[{i}].content", wrong(m, "content", content, "a string"))
        out.append(m if len(m) == 2 else {"role": role, "content": content})
    return out


def prompt_of(rec: dict, key: str) -> tuple[str, list[dict] | None]:
    """A prompt given as a string, or as a chat message list (rendered to text)."""
    v = rec.get(key)
    if type(v) is str:
        return v, None
    if type(v) is list:
        msgs = messages(v, key)
        return render_messages(msgs), msgs
    raise Bad(key, wrong(rec, key, v, "a string or a list of chat messages"))


def extras(rec: dict, known: tuple[str, ...] | frozenset) -> dict:
    """The fields of `rec` a reader does not map (they go into meta)."""
    return {k: v for k, v in rec.items() if k not in known}
