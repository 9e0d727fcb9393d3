"""The commit primitive of every distributed write: fragments in, each key once, Append only.

Workers write their rows as Lance data files (:func:`write_staged`, no commit) and hand back the
fragment metadata with the 64-bit key of every row (:func:`pairsift.store.ids.id_keys`). The
driver then makes them visible with :class:`FragmentCommitter`:

1. **One Append per chunk, at a pinned read version.** Never an Overwrite: a stale Overwrite
   silently drops a concurrent Append, whereas two Appends rebase onto each other cleanly.
2. **Duplicate-free by a rule every writer applies the same way**: of all copies of a key, the
   one in the lowest (fragment id, row) position is kept. Fragment ids grow with every commit, so
   this is "first committed wins". Right after its Append the committer reads the keys of the
   fragments committed before its own that it has not seen yet (incrementally: 8 bytes per row
   kept), and deletes, from its own new fragments only, the rows whose key was already there —
   one Delete commit (a deletion file on each of its fragments; the data files are untouched),
   retried on conflict. Two jobs writing the same ids at once therefore end with each id once:
   the later commit removes its copies, the earlier never does.
3. **Self-healing start.** A committer killed between its Append and its Delete (a window of a
   few milliseconds, only when another job wrote the same ids at that moment) leaves duplicates;
   the next committer on the table removes them by the same rule when it starts
   (``repaired`` counts them). A reader in that window can see a key twice.

This is the one place to swap for the store's own duplicate-free keyed append when it lands
(issue 9): the contract — ``commit(staged) -> rows added``, ``done_keys()`` — stays.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass

import lance
import numpy as np
import pyarrow as pa

from ...store.ids import SeenKeys, id_keys

#: Attempts of the Delete commit when another writer touches the same fragments meanwhile.
DELETE_RETRIES = 20


@dataclass
class Staged:
    """Rows written as data files but not committed: the fragments and each row's key, in order."""

    fragments: list  # lance.fragment.FragmentMetadata, in the order their rows were written
    keys: np.ndarray  # uint64, one per row, fragment after fragment

    @property
    def rows(self) -> int:
        return len(self.keys)

    def to_wire(self) -> tuple[str, bytes]:
        """A form that travels through Ray's object store or torch.distributed (JSON + bytes)."""
        return json.dumps([f.to_json() for f in self.fragments]), np.ascontiguousarray(self.keys, "<u8").tobytes()

    @classmethod
    def from_wire(cls, fragments: str, keys: bytes) -> Staged:
        metas = [lance.fragment.FragmentMetadata.from_json(json.dumps(f)) for f in json.loads(fragments)]
        return cls(metas, np.frombuffer(keys, dtype="<u8").astype(np.uint64))


def write_staged(table: pa.Table, uri: str, key: str, schema: pa.Schema, storage_options: dict | None = None,
                 max_rows_per_file: int = 1 << 20) -> Staged:
    """Write `table` as data files of the dataset at `uri` (invisible until committed)."""
    if table.num_rows == 0:
        return Staged([], np.empty(0, np.uint64))
    if table.schema != schema:
        table = table.select(schema.names).cast(schema)
    fragments = lance.fragment.write_fragments(
        table, uri, schema=schema, max_rows_per_file=max_rows_per_file, storage_options=storage_options
    )
    return Staged(list(fragments), id_keys(table.column(key)))


def _path(meta) -> str:
    return meta.files[0].path


class FragmentCommitter:
    """Append staged fragments to the table at `uri` so that every `key` value ends up once.

    Reads the table's keys once when created (and repairs duplicates left by a crash, unless
    `repair` is off); then follows the table incrementally, one commit at a time.

    `groups`: the key names a group of rows written together (pair features: a prompt's pairs),
    so rows of one commit may share a key; a group already committed by another writer is
    dropped whole. `scan_existing=False` (with `version`, the version the caller's own anti-join
    read) skips reading the existing keys: only commits made after `version` are checked.
    """

    def __init__(self, uri: str, key: str, storage_options: dict | None = None, repair: bool = True, *,
                 groups: bool = False, scan_existing: bool = True, version: int | None = None):
        self.uri, self.key, self.storage_options, self.groups = uri, key, storage_options, groups
        self.commits = 0
        self.commit_seconds = 0.0  # in commit(): the Append, the catch-up read, any Delete
        self.duplicates = 0  # rows of our own fragments removed because another writer had them first
        self.repaired = 0
        ds = self._open(version)
        self._known: set[int] = {f.fragment_id for f in ds.get_fragments()}
        self.version = ds.version
        if not scan_existing:
            self._done = np.empty(0, np.uint64)
            self._seen = SeenKeys()
            return
        tbl = ds.to_table(columns=[key], with_row_address=True)
        keys = id_keys(tbl.column(key))
        addrs = tbl.column("_rowaddr").to_numpy()
        order = np.argsort(addrs, kind="stable")  # (fragment id, row) order: "first committed"
        keys, addrs = keys[order], addrs[order]
        uniq, first = np.unique(keys, return_index=True)
        self._done = uniq
        self._seen = SeenKeys(uniq)
        if repair and not groups and len(first) < len(keys):
            extra = np.ones(len(keys), bool)
            extra[first] = False
            self.repaired = int(extra.sum())
            self.version = self._delete(self._by_fragment(addrs[extra]))

    def _open(self, version: int | None = None) -> lance.LanceDataset:
        return lance.dataset(self.uri, version=version, storage_options=self.storage_options)

    def done_keys(self) -> np.ndarray:
        """Sorted keys present when the committer started (what workers skip)."""
        return self._done

    def commit(self, staged: Iterable[Staged]) -> int:
        """Append the fragments in one commit; return the rows added (duplicates removed)."""
        staged = [s for s in staged if s.fragments]
        if not staged:
            return 0
        mine: dict[str, np.ndarray] = {}
        for s in staged:
            start = 0
            for meta in s.fragments:
                n = meta.physical_rows
                mine[_path(meta)] = s.keys[start : start + n]
                start += n
        fragments = [m for s in staged for m in s.fragments]
        t0 = time.perf_counter()
        ds = lance.LanceDataset.commit(
            self.uri, lance.LanceOperation.Append(fragments), read_version=self.version,
            storage_options=self.storage_options,
        )
        self.version = ds.version
        self.commits += 1
        added = sum(s.rows for s in staged)
        deletions = self._catch_up(ds, mine)
        if deletions:
            removed = sum(len(a) for a in deletions.values())
            self.duplicates += removed
            added -= removed
            self.version = self._delete(deletions)
        self.commit_seconds += time.perf_counter() - t0
        return added

    def _catch_up(self, ds: lance.LanceDataset, mine: dict[str, np.ndarray]) -> dict[int, np.ndarray]:
        """Follow the fragments not seen yet, in id order; our copies of keys seen before go."""
        new = sorted((f for f in ds.get_fragments() if f.fragment_id not in self._known), key=lambda f: f.fragment_id)
        others = [f for f in new if _path(f.metadata) not in mine]
        other_keys: dict[int, np.ndarray] = {}
        if others:
            tbl = ds.scanner(columns=[self.key], with_row_address=True, fragments=others).to_table()
            keys = id_keys(tbl.column(self.key))
            fids = (tbl.column("_rowaddr").to_numpy() >> np.uint64(32)).astype(np.int64)
            for f in others:
                other_keys[f.fragment_id] = keys[fids == f.fragment_id]
        deletions = {}
        ours = [f for f in new if f.fragment_id not in other_keys]
        for f in new:
            fid = f.fragment_id
            self._known.add(fid)
            if fid in other_keys:
                self._seen.novel(other_keys[fid])
            elif not self.groups:
                dup = ~self._seen.novel(mine[_path(f.metadata)])
                if dup.any():
                    deletions[fid] = (np.uint64(fid) << np.uint64(32)) | np.flatnonzero(dup).astype(np.uint64)
            elif f is ours[0]:  # one commit's fragments are one unit: compare them all, then add them
                keys = [mine[_path(g.metadata)] for g in ours]
                for g, k in zip(ours, keys):
                    dup = self._seen.contains(k)
                    if dup.any():
                        gid = np.uint64(g.fragment_id) << np.uint64(32)
                        deletions[g.fragment_id] = gid | np.flatnonzero(dup).astype(np.uint64)
                for k in keys:
                    self._seen.novel(k)
        return deletions

    @staticmethod
    def _by_fragment(addrs: np.ndarray) -> dict[int, np.ndarray]:
        fids = (addrs >> np.uint64(32)).astype(np.int64)
        return {int(f): addrs[fids == f] for f in np.unique(fids)}

    def _delete(self, deletions: dict[int, np.ndarray]) -> int:
        """Delete rows by address in one commit (retried when another writer commits meanwhile)."""
        from lance.commit import CommitConflictError

        error = None
        for _ in range(DELETE_RETRIES):
            ds = self._open()
            updated, removed = [], []
            for fid, addrs in deletions.items():
                frag = ds.get_fragment(fid)
                if frag is None:  # compacted away meanwhile; the next committer's start repairs it
                    continue
                meta = frag.delete(f"_rowaddr IN ({', '.join(str(int(a)) for a in addrs)})")
                if meta is None:
                    removed.append(fid)
                else:
                    updated.append(meta)
            if not updated and not removed:
                return ds.version
            try:
                ds = lance.LanceDataset.commit(
                    self.uri, lance.LanceOperation.Delete(updated, removed, "pairsift: duplicate keys"),
                    read_version=ds.version, storage_options=self.storage_options,
                )
                return ds.version
            except CommitConflictError as e:
                error = e
        raise error
