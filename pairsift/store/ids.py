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
import pyarrow.compute as pc

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


def id_keys(ids: pa.Array | pa.ChunkedArray | list[str]) -> np.ndarray:
    """64-bit dedup keys: the first 16 hex digits of each id as uint64.

    Keeping 8 bytes per row (not the 32-character string) is what bounds ingest memory.
    Two different ids collide on 64 bits with probability ~n²/2^65 (about 1e-6 at 10M rows).
    """
    arr = pa.chunked_array([ids]) if isinstance(ids, list) else ids
    if len(arr) == 0:
        return np.empty(0, dtype=np.uint64)
    hi = pc.utf8_slice_codeunits(arr, 0, 8)
    lo = pc.utf8_slice_codeunits(arr, 8, 16)
    # int("deadbeef", 16) per element would be Python; hex of 8 digits fits in uint32 via binary.
    return (_hex32(hi).astype(np.uint64) << np.uint64(32)) | _hex32(lo).astype(np.uint64)


_HEX = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX[_c] = _i


def _hex32(arr) -> np.ndarray:
    """Parse an array of 8-hex-digit strings into uint32, vectorised."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset : arr.offset + n + 1]
    if not np.all(np.diff(offsets) == 8):
        raise ValueError("ids must be 32 lowercase hex characters")
    digits = _HEX[data[offsets[0] : offsets[0] + 8 * n]].reshape(n, 8).astype(np.uint32)
    if (digits == 255).any():
        raise ValueError("ids must be 32 lowercase hex characters")
    shifts = np.arange(28, -1, -4, dtype=np.uint32)
    return (digits << shifts).sum(axis=1, dtype=np.uint32)


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
