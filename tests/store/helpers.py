"""Rows for the store tests."""

from __future__ import annotations

import pyarrow as pa

from pairsift.store import PROMPTS, content_id


def prompts(*texts: str) -> pa.Table:
    """Prompt rows for `texts` (content-hash ids), in the store's schema."""
    n = len(texts)
    return pa.table(
        {
            "prompt_id": [content_id(t) for t in texts],
            "text": list(texts),
            "messages": [None] * n,
            "dataset": ["d"] * n,
            "split": ["train"] * n,
            "meta": [None] * n,
        },
        schema=PROMPTS,
    )
