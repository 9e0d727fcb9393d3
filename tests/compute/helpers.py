"""Tiny models built from a config with a locally trained tokenizer, and a corpus put straight
into a store, for the compute-engine tests (no hub, no downloads)."""

from __future__ import annotations

import random

import pyarrow as pa

from pairsift.compute.tiny import (  # noqa: F401  (the tests' names for them)
    CHAT_TEMPLATE,
    WORDS,
    sentences,
    tiny_bert_dir,
    tiny_gpt2_dir,
    tiny_reward_dir,
    tiny_tokenizer,
)
from pairsift.store import ids as idmod
from pairsift.store.schema import PROMPTS, RESPONSES


def put_corpus(
    store, n_prompts: int = 12, k: int = 3, seed: int = 0, extra: list[tuple[str, list[str]]] = (), chat: bool = False
):
    """Prompts with k responses each (plus `extra` (prompt, responses)); returns (prompts, responses) rows.

    With `chat`, prompts and responses also carry messages (user / assistant).
    """
    rng = random.Random(seed)
    items = []
    for i in range(n_prompts):
        p = f"Human: {' '.join(rng.choice(WORDS) for _ in range(rng.randint(2, 12)))}? Assistant:"
        rs = [" " + s for s in sentences(k, seed=seed * 1000 + i, max_words=rng.choice([5, 30, 90]))]
        items.append((p, rs))
    items.extend(extra)
    prompts, responses = [], []
    for p, rs in items:
        pmsg = [{"role": "user", "content": p}] if chat else None
        pid = idmod.prompt_id(p, pmsg)
        prompts.append({"prompt_id": pid, "text": p, "messages": pmsg, "dataset": "t", "split": "train", "meta": None})
        for r in rs:
            rmsg = [{"role": "assistant", "content": r}] if chat else None
            responses.append({
                "response_id": idmod.response_id(pid, r, rmsg), "prompt_id": pid, "text": r, "messages": rmsg,
                "source": None, "score": None, "blank": not r.strip(), "meta": None,
            })
    with store.writer() as w:
        w.append("prompts", pa.Table.from_pylist(prompts, PROMPTS), PROMPTS)
        w.append("responses", pa.Table.from_pylist(responses, RESPONSES), RESPONSES)
    return prompts, responses
