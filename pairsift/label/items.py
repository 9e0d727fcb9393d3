"""The pairs of a subset as annotators see them: prompt and both responses, texts and chats.

Texts are read at the table versions the subset recorded (tagged, so they still exist), like
`pairsift export`, with the id filter pushed into Lance: only the subset's rows are read.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import TableNotFound
from ..select.subsets import load_subset
from ..store import Store
from ..store.subsets import SubsetManifest


@dataclass(frozen=True)
class Item:
    """One pair to label. ``a_id < b_id``; choices are recorded in terms of a and b."""

    pair_id: str
    prompt_id: str
    a_id: str
    b_id: str
    rank: int
    prompt: str
    prompt_messages: tuple[tuple[str, str], ...] | None  # (role, content) turns, or None
    a_text: str
    a_messages: tuple[tuple[str, str], ...] | None
    b_text: str
    b_messages: tuple[tuple[str, str], ...] | None


def _turns(messages) -> tuple[tuple[str, str], ...] | None:
    if messages is None:
        return None
    return tuple((str(m.get("role") or ""), str(m.get("content") or "")) for m in messages)


def _rows_by_id(store: Store, table: str, key: str, ids: list[str], version: int | None, columns: list[str]) -> dict:
    if not ids:
        return {}
    ds = store.dataset(table, version)
    got = ds.to_table(columns=[key, *columns], filter=pc.field(key).isin(pa.array(sorted(set(ids)))))
    return {r[key]: r for r in got.to_pylist()}


def load_items(store: Store, subset: str) -> tuple[SubsetManifest, list[Item]]:
    """(manifest, the subset's pairs in rank order with their texts)."""
    manifest, members = load_subset(store, subset)
    versions = manifest.store_versions
    m = members.select(["pair_id", "prompt_id", "a_id", "b_id", "rank"]).to_pylist()
    resp = _rows_by_id(
        store, "responses", "response_id", [r["a_id"] for r in m] + [r["b_id"] for r in m],
        versions.get("responses"), ["text", "messages"],
    )
    prompts = _rows_by_id(store, "prompts", "prompt_id", [r["prompt_id"] for r in m], versions.get("prompts"),
                          ["text", "messages"])
    items = []
    for r in m:
        a, b, p = resp.get(r["a_id"]), resp.get(r["b_id"]), prompts.get(r["prompt_id"])
        if a is None or b is None or p is None:
            raise TableNotFound(
                f"subset '{subset}': the texts of pair {r['pair_id']} are missing from responses/prompts at "
                "the versions the subset recorded"
            )
        items.append(
            Item(
                pair_id=r["pair_id"], prompt_id=r["prompt_id"], a_id=r["a_id"], b_id=r["b_id"], rank=int(r["rank"]),
                prompt=p["text"], prompt_messages=_turns(p["messages"]),
                a_text=a["text"], a_messages=_turns(a["messages"]),
                b_text=b["text"], b_messages=_turns(b["messages"]),
            )
        )
    return manifest, items


def revealed_columns(store: Store, subset: str, manifest: SubsetManifest, pair_ids: list[str]) -> dict[str, dict]:
    """What blind exports leave out, per pair: generator names, dataset scores, the subset's rank
    and score, and every feature column (``--reveal``)."""
    _, members = load_subset(store, subset)
    out = {r["pair_id"]: {"rank": r["rank"], "subset_score": r["score"]} for r in
           members.select(["pair_id", "rank", "score"]).to_pylist()}
    version = manifest.store_versions.get("pair_features")
    if store.has_table("pair_features") and pair_ids:
        ds = store.dataset("pair_features", version)
        skip = {"pair_id", "prompt_id", "a_id", "b_id", "label", "label_source", "orientable"}
        cols = [c for c in ds.schema.names if c not in skip]
        got = ds.to_table(columns=["pair_id", *cols], filter=pc.field("pair_id").isin(pa.array(sorted(pair_ids))))
        for r in got.to_pylist():
            out.setdefault(r.pop("pair_id"), {}).update(r)
    return out
