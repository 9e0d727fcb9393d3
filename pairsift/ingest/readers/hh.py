"""Anthropic HH-RLHF: each record holds two full dialogues, ``chosen`` and ``rejected``.

The prompt is the dialogue both share up to and including the final ``"\\n\\nAssistant:"``
marker (multi-turn prompts are kept verbatim); each response is the rest of its dialogue,
also verbatim (with its leading space), so ``prompt + response`` is the original string.

Real data is messier: in the harmless-base test split 5 pairs diverge before the last turn.
Their prompt is the longest common prefix that ends right after an ``"\\n\\nAssistant:"``
marker, each response is the remainder of its own dialogue (it may hold later turns), and the
prompt meta records ``{"diverged": true}``. They are neither dropped nor paired across two
different prompts. Whitespace-only responses are data; the record builder flags them blank.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from ...store import dumps_meta
from ..records import RecordBuilder, Response
from .base import ASSISTANT, Bad, OnInvalid, drive, extras, req_str

_N = len(ASSISTANT)
_PAIR = ((0, 1),)
_KNOWN = ("chosen", "rejected")


def read_hh(
    path, *, on_invalid: OnInvalid | None = None, batch_responses: int = 65_536
) -> Iterator[pa.RecordBatch]:
    """Stream HH-RLHF records from `path` as ``RECORD`` batches (one labelled pair each)."""
    return drive(path, _parse, on_invalid, batch_responses)


def split_dialogues(chosen: str, rejected: str) -> tuple[str, str, str, bool]:
    """(prompt, chosen response, rejected response, diverged) of two different dialogues.

    Raises :class:`Bad` when a dialogue has no assistant turn or the two share none.
    """
    ic = chosen.rfind(ASSISTANT)
    if ic < 0:
        raise Bad("chosen", "dialogue has no '\\n\\nAssistant:' turn")
    ir = rejected.rfind(ASSISTANT)
    if ir < 0:
        raise Bad("rejected", "dialogue has no '\\n\\nAssistant:' turn")
    end = ic + _N
    prompt = chosen[:end]
    if ic == ir and rejected.startswith(prompt):
        return prompt, chosen[end:], rejected[end:], False
    # The dialogues diverge before the last turn: cut at the last assistant marker inside
    # their common prefix (both dialogues hold it there, since the prefix is shared).
    common = _common_prefix_len(chosen, rejected)
    cut = chosen.rfind(ASSISTANT, 0, common)
    if cut < 0:
        raise Bad(
            "rejected",
            "shares no '\\n\\nAssistant:' turn boundary with 'chosen' "
            "(the dialogues differ before the first assistant turn)",
        )
    end = cut + _N
    return chosen[:end], chosen[end:], rejected[end:], True


def _common_prefix_len(a: str, b: str) -> int:
    # Rare path (5 of 2,312 real pairs); a binary search on slices keeps it O(n log n) in C.
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _parse(builder: RecordBuilder, line: int, rec: dict, split: str | None) -> None:
    chosen = req_str(rec, "chosen")
    rejected = req_str(rec, "rejected")
    if chosen == rejected:
        raise Bad("rejected", "identical to 'chosen' (a pair needs two different responses)")
    prompt, c, r, diverged = split_dialogues(chosen, rejected)
    meta = None
    if diverged or len(rec) > 2:
        m = extras(rec, _KNOWN)
        if diverged:
            m["diverged"] = True
        meta = dumps_meta(m)
    builder.add(line, prompt, (Response(c), Response(r)), _PAIR, split=split, meta=meta)
