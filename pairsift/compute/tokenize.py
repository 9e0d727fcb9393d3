"""Tokenisation for the compute jobs: one batched call per window, exactly as training will see it.

:func:`tokenize` serves embeddings and reward models (special tokens added, long texts keep their
start and are flagged); :func:`trl_tokenize` reproduces TRL 1.16's DPOTrainer tokenisation of
(prompt, completion) pairs, chat template included, so stored log-probs match training.
"""

from __future__ import annotations

import numpy as np

from .engine import Ragged


def tokenize(tok, texts: list[str], max_length: int, append_eos: bool = False) -> tuple[Ragged, np.ndarray]:
    """Token ids of each text (special tokens added, first `max_length` kept) and a truncated flag.

    One batched call to the (Rust) tokenizer; texts cut by the first call are the only ones
    tokenised again: tokenising to ``limit + 1`` tells exactly which exceed ``limit``.
    """
    limit = max_length - 1 if append_eos else max_length
    if not texts:
        return Ragged.from_lists([]), np.zeros(0, bool)
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
