"""A prompt with a list of responses, each with an optional score and source.

Field names are configurable; presets cover the common layouts:

===============  ============  ==============  ========  ===============  ===========
preset           prompt        responses list  text      score            source
===============  ============  ==============  ========  ===============  ===========
(default)        prompt        responses       text      score            source
ultrafeedback    instruction   completions     response  overall_score    model
alpaca           instruction   responses       output    score            generator
===============  ============  ==============  ========  ===============  ===========

List items may also be plain strings (text only). There are no labelled pairs: pairs are built
later from the scores. Prompt-level fields not mapped above (AlpacaEval's ``dataset`` and
``reference``, UltraFeedback's ``source``) go into the prompt's meta; unmapped response fields
go into that response's meta. Identical responses to one prompt are merged by the builder.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from ...errors import UsageError
from ...store import dumps_meta
from ..records import RecordBuilder, Response, finite_score
from .base import Bad, OnInvalid, drive, jtype, prompt_of, wrong

DEFAULT_FIELDS = {
    "prompt_field": "prompt",
    "responses_field": "responses",
    "text_field": "text",
    "score_field": "score",
    "source_field": "source",
}
PRESETS: dict[str, dict[str, str]] = {
    "ultrafeedback": {
        "prompt_field": "instruction",
        "responses_field": "completions",
        "text_field": "response",
        "score_field": "overall_score",
        "source_field": "model",
    },
    "alpaca": {
        "prompt_field": "instruction",
        "responses_field": "responses",
        "text_field": "output",
        "score_field": "score",
        "source_field": "generator",
    },
}


def multi_fields(preset: str | None = None, **overrides: str | None) -> dict[str, str]:
    """The field names a `read_multi` call uses: defaults, then the preset, then overrides."""
    fields = dict(DEFAULT_FIELDS)
    if preset is not None:
        if preset not in PRESETS:
            raise UsageError(f"unknown multi preset {preset!r}; choose one of {', '.join(PRESETS)}")
        fields.update(PRESETS[preset])
    fields.update({k: v for k, v in overrides.items() if v is not None})
    return fields


def read_multi(
    path,
    *,
    preset: str | None = None,
    prompt_field: str | None = None,
    responses_field: str | None = None,
    text_field: str | None = None,
    score_field: str | None = None,
    source_field: str | None = None,
    on_invalid: OnInvalid | None = None,
    batch_responses: int = 65_536,
) -> Iterator[pa.RecordBatch]:
    """Stream prompt-with-responses records from `path` as ``RECORD`` batches."""
    f = multi_fields(
        preset,
        prompt_field=prompt_field,
        responses_field=responses_field,
        text_field=text_field,
        score_field=score_field,
        source_field=source_field,
    )
    # A score or source field named on the command line must exist somewhere: a typo would
    # otherwise ingest every response silently without it (a missing text field already fails).
    named = {flag: name for flag, name in (("--score-field", score_field), ("--source-field", source_field)) if name}
    found: dict[str, set] = {"want": set(named.values()), "keys": set(), "hits": set()}
    batches = drive(path, _parser(**f, found=found if named else None), on_invalid, batch_responses)
    return _check_named(path, batches, named, found) if named else batches


def _check_named(path, batches: Iterator[pa.RecordBatch], named: dict[str, str], found: dict[str, set]
                 ) -> Iterator[pa.RecordBatch]:
    yield from batches
    for flag, name in named.items():
        if found["keys"] and name not in found["hits"]:
            have = ", ".join(sorted(map(str, found["keys"]))[:12])
            raise UsageError(f"{path}: {flag} {name!r} matches no response's field (their fields: {have})")


def _parser(prompt_field, responses_field, text_field, score_field, source_field, found=None):
    pf, rf, tf, sf, srcf = prompt_field, responses_field, text_field, score_field, source_field
    known_prompt = frozenset({pf, rf})
    known_item = frozenset({tf, sf, srcf})

    def bad_item(i: int, item) -> Bad:
        """Why item `i` is invalid (the slow path, only taken once a check failed)."""
        if type(item) is not dict:
            return Bad(f"{rf}[{i}]", f"must be an object or a string, got {jtype(item)}")
        text = item.get(tf)
        if type(text) is not str:
            return Bad(f"{rf}[{i}].{tf}", wrong(item, tf, text, "a string"))
        try:
            finite_score(item.get(sf))
        except ValueError as e:
            return Bad(f"{rf}[{i}].{sf}", str(e))
        src = item.get(srcf)
        return Bad(f"{rf}[{i}].{srcf}", wrong(item, srcf, src, "a string"))

    def parse(builder: RecordBuilder, line: int, rec: dict, split: str | None) -> None:
        prompt, prompt_messages = prompt_of(rec, pf)
        items = rec.get(rf)
        if type(items) is not list:
            items = _transpose(items)
            if items is None:
                raise Bad(rf, wrong(rec, rf, rec.get(rf), "a list of responses"))
        responses = []
        for i, item in enumerate(items):
            if type(item) is dict:
                if found is not None and found["hits"] != found["want"]:  # until every named field is seen
                    found["keys"].update(item)
                    found["hits"].update(k for k in found["want"] if k in item)
                text = item.get(tf)
                s = item.get(sf)
                src = item.get(srcf)
                if type(text) is not str or (src is not None and type(src) is not str):
                    raise bad_item(i, item)
                if s is not None:
                    # float is the common case; anything else goes through the full check.
                    if type(s) is not float or s - s != 0.0:
                        try:
                            s = finite_score(s)
                        except ValueError:
                            raise bad_item(i, item) from None
                meta = None
                if len(item) > 1 + (sf in item) + (srcf in item):
                    meta = dumps_meta({k: v for k, v in item.items() if k not in known_item})
                responses.append(Response(text, src, s, None, meta))
            elif type(item) is str:
                responses.append(Response(item))
            else:
                raise bad_item(i, item)
        meta = None
        if len(rec) > 2:
            meta = dumps_meta({k: v for k, v in rec.items() if k not in known_prompt})
        builder.add(line, prompt, responses, messages=prompt_messages, split=split, meta=meta)

    return parse


def _transpose(v) -> list | None:
    """Hugging Face ``Sequence({...})`` columns arrive as a dict of equal-length lists."""
    if type(v) is not dict or not v or not all(type(x) is list for x in v.values()):
        return None
    lists = list(v.values())
    if len({len(x) for x in lists}) != 1:
        return None
    keys = list(v)
    return [dict(zip(keys, row)) for row in zip(*lists)]
