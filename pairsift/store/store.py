"""Open a store; look tables up; read them as Arrow/Polars; version and tag them.

A store is a LanceDB database: a local directory or an object-store URI (``s3://...``) with
storage options passed through. Each table is a Lance dataset at ``<uri>/<name>.lance``.
Looking a table up opens that one dataset (one manifest read), never a listing of the store.

Writes go through :meth:`Store.writer` (:mod:`pairsift.store.writer`); the concurrency rules are
in :mod:`pairsift.store.commit` and docs/ARCHITECTURE.md ("Writes").
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from ..errors import SchemaError, StoreError, TableNotFound, UsageError
from .commit import committed, is_not_found, is_panic, short_error
from .schema import SCHEMA_VERSION, schema_version

if TYPE_CHECKING:  # lance/lancedb/polars load on first use, not at import
    import lance
    import lancedb
    import polars as pl

    from .writer import Writer

#: Which command creates each well-known table, for "run X first" messages.
MADE_BY = {
    "prompts": "pairsift ingest",
    "responses": "pairsift ingest",
    "pairs": "pairsift ingest",
    "pair_features": "pairsift pairs",
    "subsets": "pairsift select",
    "subset_members": "pairsift select",
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
        self._db = None

    def __repr__(self) -> str:
        return f"Store({self.uri!r})"

    @property
    def db(self) -> lancedb.DBConnection:
        if self._db is None:
            import lancedb

            # Strong read consistency: a handle always sees the latest commit (NOTES §1.9).
            self._db = lancedb.connect(
                self.uri, read_consistency_interval=timedelta(0), storage_options=self.storage_options
            )
        return self._db

    # ---- tables -------------------------------------------------------------------------------

    def table_uri(self, name: str) -> str:
        return f"{self.uri}/{name}.lance"

    def table_names(self) -> list[str]:
        """Tables with at least one committed version (damaged ones included), by listing.

        A folder holding only uncommitted data files (a first write that failed or was killed)
        is not a table. Use :meth:`has_table` to look one table up.
        """
        names, token = [], None
        while True:
            page = self.db.list_tables(page_token=token)
            names.extend(page.tables)
            token = page.page_token
            if not token:
                break
        out = []
        for name in sorted(names):
            try:
                self._open(name)
            except TableNotFound:
                continue
            except StoreError:
                pass  # damaged: listed, so that `info` can say so
            out.append(name)
        return out

    def _open(self, name: str, version: int | str | None = None) -> lance.LanceDataset:
        import lance

        try:
            ds = lance.dataset(self.table_uri(name), version=version, storage_options=self.storage_options)
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):
                raise
            if is_not_found(e) and version is None:
                hint = f": run `{MADE_BY[name]}` first" if name in MADE_BY else ""
                raise TableNotFound(f"store {self.uri} has no table '{name}'{hint}") from None
            if version is not None and (is_not_found(e) or "not found" in str(e).lower()):
                if not self.has_table(name):
                    hint = f": run `{MADE_BY[name]}` first" if name in MADE_BY else ""
                    raise TableNotFound(f"store {self.uri} has no table '{name}'{hint}") from None
                raise StoreError(
                    f"table '{name}' has no version {version!r} (removed by cleanup, or never written)"
                ) from None
            if is_panic(e) or isinstance(e, (OSError, ValueError, RuntimeError)):
                raise StoreError(
                    f"table '{name}' in store {self.uri} is damaged and cannot be read: {short_error(e)}"
                ) from None
            raise
        check_schema(name, ds.schema)
        return ds

    def has_table(self, name: str) -> bool:
        """Whether `name` has a committed version (one manifest read, no listing)."""
        try:
            self._open(name)
        except TableNotFound:
            return False
        return True

    def table(self, name: str) -> lancedb.table.Table:
        """The LanceDB table (raises TableNotFound naming the command that makes it)."""
        self._open(name)
        return self.db.open_table(name)

    def dataset(self, name: str, version: int | str | None = None) -> lance.LanceDataset:
        """The table as a Lance dataset (for scanners with filter pushdown), at a version or tag."""
        return self._open(name, version)

    def scan(self, name: str, version: int | str | None = None) -> pl.LazyFrame:
        """A Polars LazyFrame over the table; filters and projections are pushed into Lance."""
        import polars as pl

        self._open(name, version)  # for the error message
        # Pass the URI, not a LanceDataset: polars re-opens a dataset object at its latest version.
        return pl.scan_lance(self.table_uri(name), version=version, storage_options=self.storage_options)

    def create_table(self, name: str, schema: pa.Schema) -> lancedb.table.Table:
        """Create an empty table unless it exists (never replaces one), then check its schema."""
        from .commit import create_table

        create_table(self.table_uri(name), schema, self.storage_options, f"table '{name}' in {self.uri}")
        return self.table(name)

    def count(self, name: str, filter: str | None = None) -> int:
        return self._open(name).count_rows(filter)

    # ---- versions and tags --------------------------------------------------------------------

    def versions(self, names: Iterable[str] | None = None) -> dict[str, int]:
        """The latest version of each table (of `names`, or all)."""
        names = self.table_names() if names is None else list(names)
        return {n: self._open(n).version for n in names}

    def tag(self, tag: str, versions: dict[str, int]) -> None:
        """Tag a version of each table so that cleanup cannot delete what a subset or run read."""
        for name, version in versions.items():
            tags = self._open(name).tags
            existing = tags.list()
            if tag in existing:
                if existing[tag]["version"] == version:
                    continue
                raise StoreError(f"tag '{tag}' already exists on table '{name}' at another version")
            try:
                tags.create(tag, version)
            except (OSError, ValueError, RuntimeError) as e:
                raise StoreError(f"cannot tag table '{name}' version {version} as '{tag}': {short_error(e)}") from None
            committed(f"tag {name}")

    def untag(self, tag: str, names: Iterable[str]) -> None:
        """Remove `tag` from each table that has it (the tagged versions become collectable)."""
        for name in names:
            try:
                tags = self._open(name).tags
            except TableNotFound:
                continue
            if tag in tags.list():
                tags.delete(tag)
                committed(f"untag {name}")

    # ---- writing ------------------------------------------------------------------------------

    def writer(self, rows_per_file: int = 262_144) -> Writer:
        from .writer import Writer

        return Writer(self, rows_per_file)

    # ---- summary ------------------------------------------------------------------------------

    def info(self) -> dict:
        """Tables, row counts, schema versions, table versions, datasets and splits.

        A table that cannot be read is listed with ``{"damaged": reason}``.
        """
        tables: dict[str, dict] = {}
        for name in self.table_names():
            try:
                ds = self._open(name)
                tables[name] = {
                    "rows": ds.count_rows(),
                    "version": ds.version,
                    "schema_version": schema_version(ds.schema),
                }
            except (StoreError, SchemaError) as e:
                tables[name] = {"damaged": str(e)}
        out = {"uri": self.uri, "schema_version": SCHEMA_VERSION, "tables": tables, "datasets": {}}
        if tables.get("prompts", {}).get("rows"):
            import polars as pl

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


def open_store(uri: str | Path, storage_options: dict[str, str] | None = None, *, create: bool = True) -> Store:
    """Open the store at `uri`.

    With ``create=True`` (commands that write) a missing local directory is created; with
    ``create=False`` (read-only commands) a missing store is an error and nothing is created.
    A local path that is a file, or an empty `uri`, is always an error.
    """
    text = str(uri)
    if not text.strip():
        raise UsageError("--store is empty: give a directory or an object-store URI (s3://bucket/path)")
    if not _is_remote(text):
        path = Path(text).expanduser()
        if path.exists() and not path.is_dir():
            raise StoreError(f"store {text} is a file, not a store directory")
        if not path.exists():
            if not create:
                raise StoreError(f"no store at {text}: check --store, or create one with `pairsift ingest`")
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot create store {text}: {e.strerror or e}") from None
        return Store(path, storage_options)
    store = Store(text, storage_options)
    if not create:
        try:
            found = store.db.list_tables().tables
        except Exception as e:  # noqa: BLE001 - bucket missing, credentials, network
            raise StoreError(f"cannot open store {text}: {short_error(e)}") from None
        if not found:
            raise StoreError(f"no store at {text} (no tables): check --store, or create one with `pairsift ingest`")
    return store


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


def _json_default(value):
    """JSON for the values Parquet and Arrow rows carry beyond JSON's types."""
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            import base64

            return "base64:" + base64.b64encode(raw).decode("ascii")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def dumps_meta(meta: dict | None) -> str | None:
    """Meta columns hold a JSON object or null; empty dicts are stored as null.

    Dates and times become ISO strings, decimals strings, binary values their UTF-8 text (or
    ``"base64:..."`` when they are not text).
    """
    return json.dumps(meta, ensure_ascii=False, sort_keys=True, default=_json_default) if meta else None
