"""The store: atomic writer, versions, tags, schema versions, object storage."""

from __future__ import annotations

import uuid

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pairsift.errors import SchemaError, StoreError, TableNotFound
from pairsift.store import (
    PROMPTS,
    SCHEMA_VERSION,
    content_id,
    id_keys,
    open_store,
    pair_id,
)
from pairsift.store.ids import SeenKeys
from pairsift.store.schema import VERSION_KEY
from tests.conftest import S3_BUCKET

from .helpers import prompts


def test_writer_commits_once_per_table(tmp_store):
    with tmp_store.writer(rows_per_file=2) as w:
        for i in range(5):
            w.append("prompts", prompts(f"p{i}"), PROMPTS)
        assert not tmp_store.has_table("prompts")  # nothing visible before the block ends
    # a new table: an empty version 1 (the create, which never replaces), then the rows
    assert tmp_store.versions() == {"prompts": 2}
    assert tmp_store.count("prompts") == 5
    with tmp_store.writer() as w:
        w.append("prompts", prompts("q"))
    assert tmp_store.versions() == {"prompts": 3}
    assert sorted(tmp_store.scan("prompts").collect()["text"]) == ["p0", "p1", "p2", "p3", "p4", "q"]


def test_failed_block_leaves_store_unchanged(tmp_store):
    with tmp_store.writer() as w:
        w.append("prompts", prompts("a", "b"), PROMPTS)
    before = (tmp_store.versions(), tmp_store.count("prompts"))
    with pytest.raises(RuntimeError), tmp_store.writer(rows_per_file=1) as w:
        w.append("prompts", prompts("c"))
        w.append("prompts", prompts("d"))  # data files are written here ...
        raise RuntimeError("interrupted")  # ... but never committed
    assert (tmp_store.versions(), tmp_store.count("prompts")) == before


def test_missing_table_names_the_command(tmp_store):
    with pytest.raises(TableNotFound, match="run `pairsift ingest` first"):
        tmp_store.table("responses")


def test_newer_schema_version_is_refused(tmp_path):
    store = open_store(tmp_path / "s")
    newer = PROMPTS.with_metadata({VERSION_KEY: b"999"})
    store.db.create_table("prompts", schema=newer)
    again = open_store(tmp_path / "s")  # opening reads no table ...
    with pytest.raises(SchemaError, match="upgrade pairsift"):
        again.dataset("prompts")  # ... using one checks its version
    with pytest.raises(SchemaError, match="upgrade pairsift"), again.writer() as w:
        w.append("prompts", prompts("x"))


def test_tags_pin_versions(tmp_store):
    with tmp_store.writer() as w:
        w.append("prompts", prompts("a"), PROMPTS)
    tmp_store.tag("run1", {"prompts": 2})
    tmp_store.tag("run1", {"prompts": 2})  # idempotent
    with tmp_store.writer() as w:
        w.append("prompts", prompts("b"))
    with pytest.raises(StoreError, match="already exists"):
        tmp_store.tag("run1", {"prompts": 3})
    assert tmp_store.dataset("prompts", "run1").count_rows() == 1
    assert tmp_store.scan("prompts", version="run1").collect().height == 1


def test_info(tmp_store):
    with tmp_store.writer() as w:
        w.append("prompts", prompts("a", "b"), PROMPTS)
    info = tmp_store.info()
    assert info["tables"]["prompts"] == {"rows": 2, "version": 2, "schema_version": SCHEMA_VERSION}
    assert info["datasets"] == {"d": {"train": 2}}


def test_ids_are_stable_and_unordered():
    assert content_id("x") == content_id("x") != content_id("y")
    assert len(content_id("x")) == 32
    assert pair_id("a", "b") == pair_id("b", "a") != pair_id("a", "c")
    ids = [content_id(str(i)) for i in range(50)]
    assert id_keys(pa.array(ids)).tolist() == [int(i[:16], 16) for i in ids]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.integers(0, 40), max_size=30), max_size=12))
def test_seen_keys_matches_a_set(batches):
    seen, ref = SeenKeys(), set()
    for batch in batches:
        keys = np.array(batch, dtype=np.uint64)
        mask = seen.novel(keys)
        expected = []
        for k in batch:
            expected.append(k not in ref)
            ref.add(k)
        assert mask.tolist() == expected
    assert len(seen) == len(ref)


def test_object_store_uri_with_storage_options(s3_server):
    """A real S3 protocol round trip (moto's server), storage options passed through."""
    uri = f"s3://{S3_BUCKET}/{uuid.uuid4().hex}"
    store = open_store(uri, s3_server)
    with store.writer() as w:
        w.append("prompts", prompts("a", "b"), PROMPTS)
    again = open_store(uri, s3_server)
    assert again.count("prompts") == 2
    assert again.info()["tables"]["prompts"]["version"] == 2
