"""Stable content-hash ids.

``prompt_id`` = hash(prompt text, or canonical JSON of its chat messages);
``response_id`` = hash(prompt_id, response text or messages); ``pair_id`` = hash of the two
response ids in sorted order (unordered pair). Ids are 128-bit BLAKE2b digests as 32 hex
characters: the same content always gets the same id on every machine and version.
"""

from __future__ import annotations

import json
from hashlib import blake2b

import numpy as np
import pyarrow as pa

from ..errors import IntegrityError

_SEP = "\x1f"  # unit separator between parts


def content_id(*parts: str) -> str:
    # One join + one encode + one digest: this runs once per record and per response on ingest.
    # surrogatepass: JSON may carry lone surrogates ("\ud800"), which are still content.
    return blake2b(_SEP.join(parts).encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def canonical_messages(messages: list[dict]) -> str:
    """The JSON a message list hashes as: role and content only, fixed key order."""
    return json.dumps(
        [[m.get("role"), m.get("content")] for m in messages], ensure_ascii=False, separators=(",", ":")
    )


def prompt_id(text: str, messages: list[dict] | None = None) -> str:
    if messages is not None:
        return content_id("m", canonical_messages(messages))
    return content_id("t", text)


def response_id(prompt_id: str, text: str, messages: list[dict] | None = None) -> str:
    if messages is not None:
        return content_id(prompt_id, "m", canonical_messages(messages))
    return content_id(prompt_id, "t", text)


def pair_id(a: str, b: str) -> str:
    """Id of the unordered pair {a, b}: pair_id(a, b) == pair_id(b, a)."""
    return content_id(a, b) if a < b else content_id(b, a)


def sorted_pair_ids(a_ids, b_ids) -> list[str]:
    """`pair_id` for many pairs whose ids are already in order (a < b), without per-call overhead.

    Same bytes as :func:`content_id` (parts joined by the unit separator).
    """
    return [blake2b(f"{a}{_SEP}{b}".encode(), digest_size=16).hexdigest() for a, b in zip(a_ids, b_ids)]


def id_keys(ids: pa.Array | pa.ChunkedArray | list[str]) -> np.ndarray:
    """64-bit keys: the first 16 hex digits of each id as uint64 (they sort like the ids).

    Keeping 8 bytes per row (not the 32-character string) is what bounds ingest memory and keeps
    ids out of Python on the selection path. Parsed straight from the Arrow buffers (no string
    objects); Lance's many small chunks are parsed in groups of ~64k rows. Two different ids
    collide on 64 bits with probability ~n²/2^65 (about 1e-6 at 10M rows).
    """
    if isinstance(ids, list):
        ids = pa.array(ids, pa.string())
    chunks = ids.chunks if isinstance(ids, pa.ChunkedArray) else [ids]
    out, group, rows = [], [], 0
    for chunk in chunks:
        group.append(_id_bytes(chunk)[:, :16])
        rows += len(chunk)
        if rows >= 65_536:
            out.append(_parse_hex16(np.concatenate(group) if len(group) > 1 else group[0]))
            group, rows = [], 0
    if group:
        out.append(_parse_hex16(np.concatenate(group) if len(group) > 1 else group[0]))
    return np.concatenate(out) if len(out) > 1 else (out[0] if out else np.empty(0, dtype=np.uint64))


_HEX = np.full(256, 255, dtype=np.uint8)
_HEX[np.frombuffer(b"0123456789abcdef", dtype=np.uint8)] = np.arange(16, dtype=np.uint8)


def _parse_hex16(head: np.ndarray) -> np.ndarray:
    """[n, 16] ASCII hex digits -> n big-endian uint64."""
    digits = _HEX[head]
    if len(digits) and digits.max() > 15:
        raise IntegrityError("ids must be 32 lowercase hex characters (pairsift content ids)")
    packed = (digits[:, 0::2] << 4) | digits[:, 1::2]  # [n, 8] bytes, big-endian
    return np.ascontiguousarray(packed).view(">u8").ravel().astype(np.uint64)


def _id_bytes(arr: pa.Array) -> np.ndarray:
    """32-character ids as an [n, 32] uint8 view of the Arrow buffers."""
    n = len(arr)
    if n == 0:
        return np.zeros((0, 32), dtype=np.uint8)
    if pa.types.is_large_string(arr.type):
        off_t = np.int64
    elif pa.types.is_string(arr.type):
        off_t = np.int32
    else:
        arr, off_t = arr.cast(pa.string()), np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=off_t)[arr.offset : arr.offset + n + 1]
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)
    if arr.null_count or not (offsets[-1] - offsets[0] == 32 * n and np.all(np.diff(offsets) == 32)):
        raise IntegrityError("ids must be 32 lowercase hex characters (pairsift content ids)")
    return data[offsets[0] : offsets[0] + 32 * n].reshape(n, 32)


def row_keys(data: pa.Table | pa.RecordBatch, columns: tuple[str, ...] | list[str]) -> np.ndarray:
    """64-bit keys of a table's rows under a (possibly composite) key.

    The first column is a content id (:func:`id_keys`); each further column (a short text such
    as ``label_source``) is hashed per distinct value and XOR-ed in.
    """
    keys = id_keys(data.column(columns[0]))
    for name in columns[1:]:
        col = data.column(name)
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        enc = col.dictionary_encode()
        hashes = np.array(
            [int.from_bytes(blake2b(str(v).encode(), digest_size=8).digest(), "big") for v in enc.dictionary.to_pylist()]
            + [0],  # nulls
            dtype=np.uint64,
        )
        idx = enc.indices.fill_null(len(enc.dictionary)).to_numpy(zero_copy_only=False)
        keys = keys ^ hashes[idx]
    return keys


def sorted_keys(keys: np.ndarray) -> np.ndarray:
    return np.unique(np.asarray(keys, dtype=np.uint64))


def isin_sorted(keys: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """Mask of `keys` found in the sorted unique array `sorted_set`."""
    if not len(sorted_set) or not len(keys):
        return np.zeros(len(keys), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_set, keys), len(sorted_set) - 1)
    return sorted_set[pos] == keys


class SeenKeys:
    """A growing set of uint64 keys with vectorised membership, ~8 bytes per key.

    Keys live in sorted runs whose sizes halve from first to last (like a binary counter), so
    there are O(log n) runs to search and each key is re-merged O(log n) times; merging two
    sorted runs is a linear timsort pass.
    """

    def __init__(self, initial: np.ndarray | None = None):
        self._runs: list[np.ndarray] = []
        if initial is not None and len(initial):
            self._push(np.unique(np.asarray(initial, dtype=np.uint64)))

    def __len__(self) -> int:
        return sum(len(r) for r in self._runs)

    def _push(self, run: np.ndarray) -> None:
        self._runs.append(run)
        while len(self._runs) > 1 and len(self._runs[-2]) <= 2 * len(self._runs[-1]):
            b, a = self._runs.pop(), self._runs.pop()
            merged = np.concatenate([a, b])
            merged.sort(kind="stable")
            self._runs.append(merged)

    def contains(self, keys: np.ndarray) -> np.ndarray:
        found = np.zeros(len(keys), dtype=bool)
        for run in self._runs:
            idx = np.searchsorted(run, keys)
            idx[idx == len(run)] = 0
            found |= run[idx] == keys
        return found

    def novel(self, keys: np.ndarray) -> np.ndarray:
        """Mask of keys seen neither before nor earlier in `keys`; marks them seen."""
        keys = np.asarray(keys, dtype=np.uint64)
        uniq, first = np.unique(keys, return_index=True)
        fresh = ~self.contains(uniq)
        mask = np.zeros(len(keys), dtype=bool)
        mask[first[fresh]] = True
        if fresh.any():
            self._push(uniq[fresh])
        return mask
