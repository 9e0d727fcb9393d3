"""Reading subset manifests: the one place that knows how the `subsets` table encodes them.

`pairsift select` writes the manifests; `export`, `label import` and `train` read them back
through here, so selection and training agree on one format without importing each other.
"""

from __future__ import annotations

import json

from .sql import equals
from .store import Store

#: Manifest columns stored as JSON text.
JSON_FIELDS = ("params", "store_versions", "counts")


def read_manifests(store: Store, name: str | None = None) -> list[dict]:
    """Every manifest (or those of subset `name`), JSON fields decoded, oldest first."""
    if not store.has_table("subsets"):
        return []
    flt = equals("name", name) if name is not None else None
    rows = store.dataset("subsets").to_table(filter=flt).to_pylist()
    for row in rows:
        for key in JSON_FIELDS:
            row[key] = json.loads(row[key] or "{}")
        row["store_versions"] = {k: int(v) for k, v in row["store_versions"].items()}
    return sorted(rows, key=lambda r: (r["created_at"], r["name"]))
