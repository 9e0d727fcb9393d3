"""Tokenisation for the compute jobs: one batched call per window, exactly as training will see it.

:func:`tokenize` serves embeddings and reward models (special tokens added, long texts keep their
start and are flagged); :func:`trl_tokenize` reproduces TRL 1.16's DPOTrainer tokenisation of
(prompt, completion) pairs, chat template included, so stored log-probs match training.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .engine import Ragged

#: Characters (and at most rows) per tokenizer call. A fast tokenizer encodes a whole text even
#: when it truncates, and holds ~100-200 bytes per token while it works (offsets, token strings),
#: plus the Python lists of ids it returns; one call over a 65k-row window of long texts took
#: +1.1 GB of RSS that the C heap kept afterwards. Slices this size cost ~1-3% in speed.
SLICE_CHARS = 4_000_000
SLICE_ROWS = 4096


def slices(sizes: Sequence[int] | np.ndarray, max_chars: int | None = None, max_rows: int | None = None) -> list[slice]:
    """Consecutive slices of rows with at most `max_chars` characters (or one row) and `max_rows`
    rows (defaults: :data:`SLICE_CHARS`, :data:`SLICE_ROWS`)."""
    max_chars, max_rows = max_chars or SLICE_CHARS, max_rows or SLICE_ROWS
    sizes = np.asarray(sizes, dtype=np.int64)
    out, start, n = [], 0, len(sizes)
    ends = np.cumsum(sizes)
    while start < n:
        base = ends[start - 1] if start else 0
        stop = int(np.searchsorted(ends, base + max_chars, side="right"))
        stop = min(max(stop, start + 1), start + max_rows, n)
        out.append(slice(start, stop))
        start = stop
    return out


def tokenize(tok, texts: list[str], max_length: int, append_eos: bool = False) -> tuple[Ragged, np.ndarray]:
    """Token ids of each text (special tokens added, first `max_length` kept) and a truncated flag.

    Batched calls to the (Rust) tokenizer over slices of :data:`SLICE_CHARS` characters; texts cut
    by the first call are the only ones tokenised again: tokenising to ``limit + 1`` tells
    exactly which exceed ``limit``.
    """
    if not texts:
        return Ragged.from_lists([]), np.zeros(0, bool)
    parts = [_tokenize(tok, texts[s], max_length, append_eos) for s in slices([len(t) for t in texts])]
    return Ragged.concat([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _tokenize(tok, texts: list[str], max_length: int, append_eos: bool) -> tuple[Ragged, np.ndarray]:
    limit = max_length - 1 if append_eos else max_length
    enc = tok(texts, add_special_tokens=True, truncation=True, max_length=limit + 1,
              return_attention_mask=False, return_token_type_ids=False)["input_ids"]
    lengths = np.fromiter((len(x) for x in enc), dtype=np.int64, count=len(enc))
    truncated = lengths > limit
    if truncated.any():
        cut = np.flatnonzero(truncated)
        redo = tok([texts[i] for i in cut], add_special_tokens=True, truncation=True, max_length=limit,
                   return_attention_mask=False, return_token_type_ids=False)["input_ids"]
        for i, ids in zip(cut, redo):
            enc[i] = ids
    if append_eos:
        eos = tok.eos_token_id
        enc = [list(x) + [eos] for x in enc]
    return Ragged.from_lists(enc), truncated


def messages(x) -> list[dict]:
    """Chat messages as plain role/content dicts (Arrow structs may carry extra keys)."""
    return [{"role": m["role"], "content": m["content"]} for m in x]


def trl_tokenize_ragged(tok, prompts: list, completions: list, chat: bool) -> tuple[Ragged, np.ndarray]:
    """:func:`trl_tokenize` over slices of :data:`SLICE_CHARS` characters, as one :class:`Ragged`."""
    sizes = [_chars(p) + _chars(c) for p, c in zip(prompts, completions)]
    seqs, starts = [], []
    for s in slices(sizes):
        full, start = trl_tokenize(tok, prompts[s], completions[s], chat)
        seqs.append(Ragged.from_lists(full))
        starts.append(start)
        del full
    if not seqs:
        return Ragged.from_lists([]), np.zeros(0, np.int64)
    return Ragged.concat(seqs), np.concatenate(starts)


def _chars(x) -> int:
    return len(x) if isinstance(x, str) else sum(len(m.get("content") or "") for m in x)


def trl_tokenize(tok, prompts: list, completions: list, chat: bool) -> tuple[list[list[int]], np.ndarray]:
    """Full sequences (prompt + completion ids) and completion starts, as TRL 1.16 tokenises.

    `prompts`/`completions` are strings, or message lists when `chat`.
    """
    if chat:
        def apply(m, **kw):
            return list(tok.apply_chat_template(m, tokenize=True, return_dict=True, **kw)["input_ids"])

        cache: dict = {}
        prompt_ids, full = [], []
        for p, c in zip(prompts, completions):
            key = repr(p)
            if key not in cache:
                cache[key] = apply(p, add_generation_prompt=True)
            prompt_ids.append(cache[key])
            full.append(apply(p + c))
    else:
        eos = tok.eos_token
        completions = [c if c.endswith(eos) else c + eos for c in completions]
        uniq = list(dict.fromkeys(prompts))
        enc = tok(uniq, return_attention_mask=False)["input_ids"]
        by_text = dict(zip(uniq, enc))
        prompt_ids = [by_text[p] for p in prompts]
        full = tok([p + c for p, c in zip(prompts, completions)], return_attention_mask=False)["input_ids"]
    starts = np.fromiter((_common_prefix(a, b) for a, b in zip(prompt_ids, full)), dtype=np.int64, count=len(full))
    return full, starts


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    diff = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(diff[0])
