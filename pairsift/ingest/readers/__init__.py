"""Readers: one per input format, each a streaming iterator of ``RECORD`` batches.

Every reader takes a path (see :mod:`pairsift.ingest.sources` for the file types) and
``on_invalid`` / ``batch_responses`` keywords; :data:`READERS` maps format names to them and
:func:`detect_format` guesses the format from the first valid record's fields.
"""

from __future__ import annotations

from itertools import islice

from ...errors import UsageError
from ..sources import iter_records
from .base import ASSISTANT, Bad
from .hh import read_hh, split_dialogues
from .multi import PRESETS, read_multi
from .pairs import read_pairs
from .shp import read_shp

READERS = {"hh": read_hh, "pairs": read_pairs, "multi": read_multi, "shp": read_shp}

#: How many leading records detection may skip over when they fail to parse.
DETECT_SCAN = 1000


def detect_format(path) -> tuple[str, dict, str]:
    """Guess `(reader name, reader kwargs, reason)` from the first parseable record of `path`.

    Raises :class:`UsageError` naming the fields seen and the ``--format`` choices when the
    fields match no reader.
    """
    rec = None
    for _line, value, _raw, _origin in islice(iter_records(path), DETECT_SCAN):
        if type(value) is dict:
            rec = value
            break
    if rec is None:
        raise UsageError(
            f"{path}: found no parseable record in its first {DETECT_SCAN} records to guess the "
            f"format from; pass --format ({'|'.join(READERS)})"
        )
    guess = _guess(rec)
    if guess is None:
        fields = ", ".join(sorted(map(str, rec))) or "none"
        raise UsageError(
            f"{path}: cannot guess the format from the fields of its first record ({fields}); "
            f"pass --format {'|'.join(READERS)} (for multi, with the field names)"
        )
    return guess


def _first_item(v):
    return v[0] if isinstance(v, list) and v else None


def _guess(rec: dict) -> tuple[str, dict, str] | None:
    if "chosen" in rec and "rejected" in rec:
        if "prompt" in rec:
            kind = "conversational" if isinstance(rec["chosen"], list) else "string"
            return "pairs", {}, f"fields prompt/chosen/rejected ({kind}) -> pairs"
        c, r = rec["chosen"], rec["rejected"]
        if isinstance(c, str) and isinstance(r, str) and ASSISTANT in c:
            return "hh", {}, "fields chosen/rejected with '\\n\\nAssistant:' dialogues -> hh"
        return None
    if "history" in rec and "human_ref_A" in rec:
        return "shp", {}, "fields history/human_ref_A/human_ref_B -> shp"
    for preset, fields in PRESETS.items():
        rf, tf, pf = fields["responses_field"], fields["text_field"], fields["prompt_field"]
        items = rec.get(rf)
        if not isinstance(items, (list, dict)):
            continue
        first = _first_item(items)
        if (isinstance(first, dict) and tf in first) or (
            isinstance(items, dict) and tf in items  # a Hugging Face Sequence of dicts
        ):
            return "multi", {"preset": preset}, (
                f"field {rf!r} lists objects with {tf!r} -> multi (preset {preset})"
            )
        if first is None and pf in rec and "prompt" not in rec and rf != "responses":
            return "multi", {"preset": preset}, (
                f"fields {pf!r} and {rf!r} -> multi (preset {preset})"
            )
    if isinstance(rec.get("responses"), (list, dict)):
        return "multi", {}, (
            "field 'responses' (generic: prompt, responses[].text/score/source) -> multi"
        )
    return None


__all__ = [
    "READERS",
    "Bad",
    "detect_format",
    "read_hh",
    "read_multi",
    "read_pairs",
    "read_shp",
    "split_dialogues",
]
