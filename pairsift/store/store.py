"""Open or create a store; read tables as Arrow/Polars; write atomically per table.

A store is a LanceDB database: a local directory or an object-store URI (``s3://...``) with
storage options passed through. Each table is a Lance dataset at ``<uri>/<name>.lance``.

Writes go through :meth:`Store.writer`: rows are written as data files while the job streams
(bounded memory) and nothing becomes visible until the ``with`` block exits cleanly, when each
table gets exactly one commit. An exception anywhere inside the block leaves every table at the
version it had (the uncommitted data files are unreferenced and removed by ``optimize``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import lance
import lancedb
import polars as pl
import pyarrow as pa

from ..errors import SchemaError, StoreError, TableNotFound
from .schema import SCHEMA_VERSION, schema_version

#: Which command creates each well-known table, for "run X first" messages.
MADE_BY = {
    "prompts": "pairsift ingest",
    "responses": "pairsift ingest",
    "pairs": "pairsift ingest",
}


def _is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


class Store:
    """A pairsift store. Cheap to construct; safe to share within one process."""

    def __init__(self, uri: str | Path, storage_options: dict[str, str] | None = None):
        uri = str(uri)
        if not _is_remote(uri):
            uri = str(Path(uri).expanduser().resolve())
        self.uri = uri.rstrip("/")
        self.storage_options = dict(storage_options or {}) or None
        # Strong read consistency: a handle always sees the latest commit (NOTES §1.9).
        self.db = lancedb.connect(
            self.uri, read_consistency_interval=timedelta(0), storage_options=self.storage_options
        )

    def __repr__(self) -> str:
        return f"Store({self.uri!r})"

    # ---- tables -------------------------------------------------------------------------------

    def table_names(self) -> list[str]:
        """Committed tables. A folder holding only uncommitted data files (a first write that
        failed or was killed) is not a table."""
        names, token = [], None
        while True:
            page = self.db.list_tables(page_token=token)
            names.extend(page.tables)
            token = page.page_token
            if not token:
                return sorted(n for n in names if self._committed(n))

    def _committed(self, name: str) -> bool:
        try:
            lance.dataset(self.table_uri(name), storage_options=self.storage_options)
        except ValueError:  # lance: "Dataset at path ... was not found"
            return False
        return True

    def drop_orphan(self, name: str) -> None:
        """Remove the data files of a table whose first commit never happened."""
        if not self._committed(name) and name in self.db.list_tables().tables:
            self.db.drop_table(name)

    def has_table(self, name: str) -> bool:
        return name in self.table_names()

    def table(self, name: str) -> lancedb.table.Table:
        if not self.has_table(name):
            hint = f": run `{MADE_BY[name]}` first" if name in MADE_BY else ""
            raise TableNotFound(f"store {self.uri} has no table '{name}'{hint}")
        return self.db.open_table(name)

    def table_uri(self, name: str) -> str:
        return f"{self.uri}/{name}.lance"

    def dataset(self, name: str, version: int | str | None = None) -> lance.LanceDataset:
        """The table as a Lance dataset (for scanners with filter pushdown), at a version or tag."""
        self.table(name)  # for the error message
        return lance.dataset(self.table_uri(name), version=version, storage_options=self.storage_options)

    def scan(self, name: str, version: int | str | None = None) -> pl.LazyFrame:
        """A Polars LazyFrame over the table; filters and projections are pushed into Lance."""
        self.table(name)  # for the error message
        # Pass the URI, not a LanceDataset: polars re-opens a dataset object at its latest version.
        return pl.scan_lance(self.table_uri(name), version=version, storage_options=self.storage_options)

    def create_table(self, name: str, schema: pa.Schema) -> lancedb.table.Table:
        """Create an empty table, or check that an existing one has a compatible schema."""
        if self.has_table(name):
            table = self.db.open_table(name)
            check_schema(name, table.schema)
            return table
        return self.db.create_table(name, schema=schema, storage_options=self.storage_options)

    def count(self, name: str, filter: str | None = None) -> int:
        return self.table(name).count_rows(filter)

    # ---- versions and tags --------------------------------------------------------------------

    def versions(self, names: Iterable[str] | None = None) -> dict[str, int]:
        """The latest version of each table (of `names`, or all)."""
        names = self.table_names() if names is None else list(names)
        return {n: self.table(n).version for n in names}

    def tag(self, tag: str, versions: dict[str, int]) -> None:
        """Tag a version of each table so that cleanup cannot delete what a subset or run read."""
        for name, version in versions.items():
            tags = self.table(name).tags
            if tag in tags.list():
                if tags.get_version(tag) == version:
                    continue
                raise StoreError(f"tag '{tag}' already exists on table '{name}' at another version")
            tags.create(tag, version)

    # ---- writing ------------------------------------------------------------------------------

    def writer(self, rows_per_file: int = 262_144) -> Writer:
        return Writer(self, rows_per_file)

    # ---- summary ------------------------------------------------------------------------------

    def info(self) -> dict:
        """Tables, row counts, schema versions, table versions, datasets and splits."""
        tables = {}
        for name in self.table_names():
            t = self.db.open_table(name)
            tables[name] = {
                "rows": t.count_rows(),
                "version": t.version,
                "schema_version": schema_version(t.schema),
            }
        out = {"uri": self.uri, "schema_version": SCHEMA_VERSION, "tables": tables, "datasets": {}}
        if "prompts" in tables and tables["prompts"]["rows"]:
            counts = (
                self.scan("prompts")
                .group_by("dataset", "split")
                .agg(pl.len().alias("prompts"))
                .sort("dataset", "split")
                .collect()
            )
            for row in counts.iter_rows(named=True):
                out["datasets"].setdefault(row["dataset"], {})[row["split"]] = row["prompts"]
        return out


def check_schema(name: str, schema: pa.Schema) -> None:
    found = schema_version(schema)
    if found is not None and found > SCHEMA_VERSION:
        raise SchemaError(
            f"table '{name}' has schema version {found}, newer than this pairsift's {SCHEMA_VERSION}: "
            "upgrade pairsift"
        )


def open_store(uri: str | Path, storage_options: dict[str, str] | None = None) -> Store:
    """Open the store at `uri`, creating the directory if needed, and check its schema versions."""
    if not _is_remote(str(uri)):
        Path(uri).expanduser().mkdir(parents=True, exist_ok=True)
    try:
        store = Store(uri, storage_options)
        for name in store.table_names():
            check_schema(name, store.db.open_table(name).schema)
    except (OSError, ValueError, RuntimeError) as e:
        if isinstance(e, SchemaError):
            raise
        raise StoreError(f"cannot open store {uri}: {e}") from e
    return store


@dataclass
class _Staged:
    schema: pa.Schema
    read_version: int | None  # None: the table does not exist yet and is created on commit
    fragments: list = field(default_factory=list)
    pending: list[pa.RecordBatch] = field(default_factory=list)
    pending_rows: int = 0
    rows: int = 0


class Writer:
    """Stage appends to several tables; commit each table once when the block exits cleanly.

    >>> with store.writer() as w:
    ...     w.append("responses", batch)      # data files written now, invisible until commit
    """

    def __init__(self, store: Store, rows_per_file: int):
        self.store = store
        self.rows_per_file = rows_per_file
        self._staged: dict[str, _Staged] = {}
        self.committed: dict[str, int] = {}

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
            return
        for name, staged in self._staged.items():
            if staged.read_version is None and staged.fragments:
                self.store.drop_orphan(name)  # a new table's uncommitted files: leave no folder

    def append(self, name: str, data: pa.RecordBatch | pa.Table, schema: pa.Schema | None = None) -> None:
        """Queue rows for `name`. `schema` is required when the table does not exist yet."""
        staged = self._staged.get(name)
        if staged is None:
            staged = self._stage(name, schema)
        if data.num_rows == 0:
            return
        if data.schema != staged.schema:
            data = data.select(staged.schema.names).cast(staged.schema)
        batches = data.to_batches() if isinstance(data, pa.Table) else [data]
        staged.pending.extend(batches)
        staged.pending_rows += data.num_rows
        staged.rows += data.num_rows
        if staged.pending_rows >= self.rows_per_file:
            self._flush(name, staged)

    def rows(self, name: str) -> int:
        return self._staged[name].rows if name in self._staged else 0

    def _stage(self, name: str, schema: pa.Schema | None) -> _Staged:
        if self.store.has_table(name):
            ds = self.store.dataset(name)
            check_schema(name, ds.schema)
            staged = _Staged(ds.schema, ds.version)
        elif schema is None:
            raise TableNotFound(f"store {self.store.uri} has no table '{name}' and no schema was given")
        else:
            staged = _Staged(schema, None)
        self._staged[name] = staged
        return staged

    def _flush(self, name: str, staged: _Staged) -> None:
        if not staged.pending:
            return
        reader = pa.RecordBatchReader.from_batches(staged.schema, staged.pending)
        staged.fragments.extend(
            lance.fragment.write_fragments(
                reader,
                self.store.table_uri(name),
                schema=staged.schema,
                max_rows_per_file=max(self.rows_per_file, staged.pending_rows),
                storage_options=self.store.storage_options,
            )
        )
        staged.pending, staged.pending_rows = [], 0

    def commit(self) -> dict[str, int]:
        """Write what is pending and commit each staged table once, in the order first staged."""
        for name, staged in self._staged.items():
            self._flush(name, staged)
        for name, staged in self._staged.items():
            if staged.read_version is None:
                op = lance.LanceOperation.Overwrite(staged.schema, staged.fragments)
            elif staged.fragments:
                op = lance.LanceOperation.Append(staged.fragments)
            else:
                continue
            ds = lance.LanceDataset.commit(
                self.store.table_uri(name),
                op,
                read_version=staged.read_version,
                storage_options=self.store.storage_options,
            )
            self.committed[name] = ds.version
        self._staged.clear()
        return self.committed


def read_batches(
    store: Store,
    name: str,
    columns: list[str] | None = None,
    filter: str | None = None,
    version: int | str | None = None,
    batch_size: int = 65_536,
) -> Iterator[pa.RecordBatch]:
    """Stream a table as Arrow batches with projection and filter pushed into Lance."""
    yield from store.dataset(name, version).to_batches(columns=columns, filter=filter, batch_size=batch_size)


def dumps_meta(meta: dict | None) -> str | None:
    """Meta columns hold a JSON object or null; empty dicts are stored as null."""
    return json.dumps(meta, ensure_ascii=False, sort_keys=True) if meta else None
