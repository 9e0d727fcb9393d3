"""Staged, keyed, compare-and-swap appends: how every pairsift job adds rows to a table.

A :class:`TableStage` writes rows as data files while a job streams (bounded memory); nothing
is visible until :meth:`TableStage.commit`. For a table with a content key
(:func:`pairsift.store.schema.table_key`) it keeps only rows whose key is in neither the table
(as of the version it first read) nor its own earlier rows, and at commit time it also drops the
rows another writer committed in the meantime: the commit is a compare-and-swap on the version
it checked (:func:`pairsift.store.commit.try_append`), retried after each lost race. So
concurrent jobs never duplicate a key and never lose a row.

:class:`Writer` stages several tables and commits each once when its ``with`` block exits
cleanly; an exception leaves every table as it was (the data files written so far are
unreferenced; ``pairsift optimize`` removes them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from ..errors import SchemaError, TableNotFound
from .commit import (
    MAX_ATTEMPTS,
    backoff,
    committed,
    create_table,
    try_append,
    write_error,
)
from .ids import SeenKeys, isin_sorted, row_keys, sorted_keys
from .schema import table_key
from .store import Store, check_schema


class LayoutChanged(SchemaError):
    """The table's columns changed (another job added some) between this job's read and its
    commit: the job must start over with the new layout."""


class Added(NamedTuple):
    """What one append staged: rows kept, and rows dropped because their key was already in the
    table (`present`) or earlier in this job (`repeated`); `kept` masks the rows kept (None: all)."""

    rows: int
    present: int
    repeated: int
    kept: np.ndarray | None = None


_DEFAULT = object()


class TableStage:
    """Rows staged for one table; see the module docstring.

    `schema` is required when the table may not exist yet. `key` defaults to the table's content
    key (None: no deduplication). With ``check_existing=False`` the caller promises its rows are
    new as of :attr:`read_version` (it deduplicated against that version itself); only rows
    committed since then by other writers are dropped. `check(schema)` is called with the
    table's schema whenever this stage meets a version it did not read (a table created
    concurrently by another job, for instance) and raises if the rows staged do not belong there.
    `version`: read the table as of this version (the one the caller deduplicated against)
    instead of the latest; 0 means "as if absent" (the caller saw no table, so every row a
    concurrent job committed since counts as new to it, and is checked at commit).
    """

    def __init__(
        self,
        store: Store,
        name: str,
        schema: pa.Schema | None = None,
        *,
        rows_per_file: int = 262_144,
        key=_DEFAULT,
        check_existing: bool = True,
        check: Callable[[pa.Schema], None] | None = None,
        version: int | None = None,
    ):
        self.store, self.name, self.rows_per_file = store, name, rows_per_file
        self.uri = store.table_uri(name)
        self.what = f"table '{name}' in store {store.uri}"
        self.key: tuple[str, ...] | None = table_key(name) if key is _DEFAULT else key
        self.check = check
        try:
            ds = store.dataset(name, version) if version != 0 else None
        except TableNotFound:
            ds = None
        if ds is None and schema is None:
            raise TableNotFound(f"store {store.uri} has no table '{name}' and no schema was given")
        if ds is not None and schema is not None:
            ds = self._upgrade(ds, schema)
        self.schema = ds.schema if ds is not None else schema
        self.read_version = ds.version if ds is not None else 0
        self._read_fragments = {f.fragment_id for f in ds.get_fragments()} if ds is not None else set()
        self._in_table = None
        if self.key is not None and check_existing and ds is not None:
            cols = list(self.key)
            self._in_table = SeenKeys(row_keys(ds.to_table(columns=cols), cols))
        self._seen = SeenKeys() if self.key is not None else None  # every key this job staged or skipped
        # Keys other writers committed after the first read (met when catching up): later rows
        # with one of them are dropped at once.
        self._later = SeenKeys() if self.key is not None else None
        self.fragments: list = []
        self._frag_keys: list[np.ndarray] = []
        self._pending: list[pa.RecordBatch] = []
        self._pending_keys: list[np.ndarray] = []  # keys of the pending rows, computed once
        self._pending_rows = 0
        self.rows = 0  # rows staged
        self.raced = 0  # staged rows dropped at commit: another writer committed them first
        self.committed_rows = 0

    # ---- staging ----------------------------------------------------------------------------

    def _upgrade(self, ds, schema: pa.Schema):
        """Add the nullable columns `schema` has and the table lacks (an older pairsift wrote it)."""
        have = set(ds.schema.names)
        missing = [f for f in schema if f.name not in have]
        if not missing:
            return ds
        if any(not f.nullable for f in missing):
            raise SchemaError(f"table '{self.name}' lacks columns {[f.name for f in missing]}; it cannot be upgraded")
        for attempt in range(MAX_ATTEMPTS):
            try:
                ds.add_columns([f.remove_metadata() for f in missing])
                committed(f"upgrade {self.name}")
                break
            except OSError as e:
                if "onflict" not in str(e):
                    raise write_error(self.what, e) from None
                backoff(attempt)
                ds = self.store.dataset(self.name)
                if all(f.name in ds.schema.names for f in missing):
                    break
        return self.store.dataset(self.name)

    def add(self, data: pa.Table | pa.RecordBatch) -> Added:
        """Stage rows (cast to the table's schema); returns what was kept and dropped."""
        if data.num_rows == 0:
            return Added(0, 0, 0)
        if data.schema != self.schema:
            data = data.select(self.schema.names).cast(self.schema)
        present = repeated = 0
        fresh = None
        if self.key is not None:
            keys = row_keys(data, self.key)
            first = self._seen.novel(keys)  # first time this job meets the key (any table state)
            repeated = int((~first).sum())
            fresh = first
            known = self._later.contains(keys)
            if self._in_table is not None:
                known |= self._in_table.contains(keys)
            in_table = first & known
            present = int(in_table.sum())
            fresh = first & ~in_table
            if not fresh.all():
                data = data.filter(pa.array(fresh))
                keys = keys[fresh]
            self._pending_keys.append(keys)
        if data.num_rows:
            batches = data.to_batches() if isinstance(data, pa.Table) else [data]
            self._pending.extend(b for b in batches if b.num_rows)
            self._pending_rows += data.num_rows
            self.rows += data.num_rows
            if self._pending_rows >= self.rows_per_file:
                self.flush()
        return Added(data.num_rows, present, repeated, None if fresh is None or fresh.all() else fresh)

    def flush(self) -> None:
        """Write the pending rows as data files (not yet part of any version)."""
        if not self._pending:
            return
        table = pa.Table.from_batches(self._pending, self.schema)
        keys = np.concatenate(self._pending_keys) if self._pending_keys else None
        self._pending, self._pending_keys, self._pending_rows = [], [], 0
        self._write(table, keys)

    def _write(self, table: pa.Table, keys: np.ndarray | None = None) -> None:
        import lance

        try:
            frags = lance.fragment.write_fragments(
                table,
                self.uri,
                schema=self.schema,
                max_rows_per_file=max(self.rows_per_file, table.num_rows),
                storage_options=self.store.storage_options,
                **({"mode": "overwrite"} if self.read_version == 0 else {}),
            )
        except (OSError, ValueError, RuntimeError) as e:
            raise write_error(self.what, e) from None
        if self.key is None:
            keys = np.empty(0, np.uint64)
        elif keys is None:
            keys = row_keys(table, self.key)
        start = 0
        for frag in frags:
            self.fragments.append(frag)
            self._frag_keys.append(keys[start : start + frag.physical_rows])
            start += frag.physical_rows

    # ---- committing -------------------------------------------------------------------------

    def commit(self) -> int | None:
        """Commit what is staged; returns the new version (None if there was nothing to add).

        A table that did not exist is created (empty) first, never replaced.
        """
        self.flush()
        if self.read_version == 0:
            create_table(self.uri, self.schema, self.store.storage_options, self.what)
        if not self.fragments:
            return None
        for attempt in range(MAX_ATTEMPTS):
            ds = self.store.dataset(self.name)
            if ds.version != self.read_version:
                self._catch_up(ds)
                if not self.fragments:
                    return None
            out = try_append(ds, self.fragments, self.store.storage_options, self.what)
            if out is not None:
                self.committed_rows += sum(f.physical_rows for f in self.fragments)
                self.read_version = out.version
                self._read_fragments = {f.fragment_id for f in out.get_fragments()}
                self.fragments, self._frag_keys = [], []
                return out.version
            backoff(attempt)
        raise write_error(self.what, RuntimeError(f"still conflicting after {MAX_ATTEMPTS} attempts; retry later"))

    def _catch_up(self, ds) -> None:
        """Move the read point to `ds`: check its layout, and drop staged rows whose key another
        writer committed since the version read before."""
        if [(f.name, f.type) for f in ds.schema] != [(f.name, f.type) for f in self.schema]:
            raise LayoutChanged(
                f"table '{self.name}' changed its columns while this job ran "
                f"({', '.join(ds.schema.names)}); run the job again"
            )
        check_schema(self.name, ds.schema)
        if self.check is not None:
            self.check(ds.schema)
        new = [f for f in ds.get_fragments() if f.fragment_id not in self._read_fragments]
        if self.key is not None and new:
            cols = list(self.key)
            theirs = sorted_keys(row_keys(ds.scanner(columns=cols, fragments=new).to_table(), cols))
            self._drop(theirs)
            self._later.novel(theirs)
        self.read_version = ds.version
        self._read_fragments = {f.fragment_id for f in ds.get_fragments()}

    def _drop(self, theirs: np.ndarray) -> None:
        frags, frag_keys = [], []
        rewrite = []
        for frag, keys in zip(self.fragments, self._frag_keys):
            dup = isin_sorted(keys, theirs)
            if not dup.any():
                frags.append(frag)
                frag_keys.append(keys)
                continue
            self.raced += int(dup.sum())
            self.rows -= int(dup.sum())
            if not dup.all():
                rewrite.append((frag, ~dup))
        self.fragments, self._frag_keys = frags, frag_keys
        for frag, keep in rewrite:
            self._write(self._read_fragment(frag).filter(pa.array(keep)))

    def _read_fragment(self, frag) -> pa.Table:
        """The rows of one of our uncommitted fragments (one data file with every column)."""
        from lance.file import LanceFileReader

        path = f"{self.uri}/data/{frag.files[0].path}"
        reader = LanceFileReader(path, storage_options=self.store.storage_options)
        return reader.read_all().to_table().cast(self.schema)


class Writer:
    """Stage appends to several tables; commit each table once when the block exits cleanly.

    >>> with store.writer() as w:
    ...     w.append("responses", batch)      # data files written now, invisible until commit

    Tables are committed in the order they were first staged (ingest stages children before
    parents, so a reader that sees a prompt also sees its responses and pairs).
    """

    def __init__(self, store: Store, rows_per_file: int):
        self.store = store
        self.rows_per_file = rows_per_file
        self._stages: dict[str, TableStage] = {}
        self.committed: dict[str, int] = {}

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()

    def stage(self, name: str, schema: pa.Schema | None = None, **options) -> TableStage:
        """The stage of `name`, created on first use (reads the table's version and keys then)."""
        st = self._stages.get(name)
        if st is None:
            st = self._stages[name] = TableStage(self.store, name, schema, rows_per_file=self.rows_per_file, **options)
        return st

    def append(self, name: str, data: pa.RecordBatch | pa.Table, schema: pa.Schema | None = None) -> Added:
        """Queue rows for `name`. `schema` is required when the table does not exist yet."""
        return self.stage(name, schema).add(data)

    def rows(self, name: str) -> int:
        return self._stages[name].rows if name in self._stages else 0

    def commit(self) -> dict[str, int]:
        """Write what is pending and commit each staged table once, in the order first staged."""
        for st in self._stages.values():
            st.flush()
        for name, st in self._stages.items():
            version = st.commit()
            if version is not None:
                self.committed[name] = version
        return self.committed
