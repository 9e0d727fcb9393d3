"""Issue 9: `kill -9` right after EACH commit of every multi-commit command, then the checks.

Each command runs in a real process with ``PAIRSIFT_TEST_KILL_AFTER_COMMIT=N`` (the store's
commit path SIGKILLs the process right after its Nth commit), for N = 1, 2, ... until the
command completes without reaching N. After every kill the store must hold no duplicate key, a
subset must be whole or absent, and a plain re-run must end in exactly the state of an
uninterrupted run.
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pyarrow as pa
import pytest

from pairsift.store import Store, open_store
from pairsift.store.schema import embeddings_schema

from .helpers import (
    check_store,
    one_error_line,
    pairs_records,
    run,
    store_args,
    table_keys,
    write_pairs_file,
)

pytestmark = pytest.mark.slow

HH_SAMPLE = Path(__file__).resolve().parents[2] / "pairsift" / "sample_data" / "hh_harmless_sample.jsonl"
KILLED = -signal.SIGKILL


def kill_points(args: list[str], store_for, after_kill, limit: int = 40) -> int:
    """Run `args` killed after commit N for N = 1.. until it completes; returns how many commits
    the command makes. `store_for(n)` gives a fresh store for attempt n; `after_kill(store, n)`
    checks it."""
    for n in range(1, limit):
        store = store_for(n)
        rc, _, err = run([*args, *store_args(store)], PAIRSIFT_TEST_KILL_AFTER_COMMIT=str(n))
        if rc == 0:
            assert n > 1, "the command made no commit at all"
            return n - 1
        assert rc == KILLED, (n, rc, err[-2000:])
        after_kill(store, n)
    raise AssertionError(f"still committing after {limit} commits")


def snapshot(store: Store) -> dict:
    out = {}
    for name in ("prompts", "responses", "pairs", "pair_features"):
        if open_store(store.uri, create=False).has_table(name):
            out[name] = table_keys(store, name)
    return out


def test_ingest_killed_after_each_commit(tmp_path):
    reference = Store(tmp_path / "reference")
    assert run(["ingest", str(HH_SAMPLE), *store_args(reference)])[0] == 0
    want = snapshot(reference)

    def after_kill(store, n):
        check_store(store)
        rc, _, err = run(["ingest", str(HH_SAMPLE), *store_args(store)])  # the re-run completes it
        assert rc == 0, err
        check_store(store)
        assert snapshot(store) == want

    commits = kill_points(["ingest", str(HH_SAMPLE)], lambda n: Store(tmp_path / f"s{n}"), after_kill)
    assert commits == 6  # create + append of responses, pairs, prompts


@pytest.fixture
def paired_store(tmp_path) -> Path:
    """A store with pair_features, to copy once per kill point."""
    store = Store(tmp_path / "template")
    f = write_pairs_file(tmp_path / "a.jsonl", pairs_records(0, 120))
    assert run(["ingest", str(f), *store_args(store)])[0] == 0
    assert run(["pairs", *store_args(store)])[0] == 0
    return Path(store.uri)


def copy_of(template: Path, dest: Path) -> Store:
    shutil.copytree(template, dest)
    return Store(dest)


def test_select_killed_after_each_commit(tmp_path, paired_store):
    def after_kill(store, n):
        check_store(store, export_dir=tmp_path / f"x{n}")  # absent, or whole
        rc, _, err = run(["select", "random", "--name", "s", *store_args(store)])
        # a crash after tagging or after the members never blocks the name
        assert rc == 0 or ("already exists" in err and one_error_line(err)), err
        counts = check_store(store, export_dir=tmp_path / f"y{n}")
        assert counts["subsets"] == {"s": 120}

    commits = kill_points(["select", "random", "--name", "s"], lambda n: copy_of(paired_store, tmp_path / f"s{n}"),
                          after_kill)
    assert commits >= 5  # tags, members (create + append), manifest (create + append)


def test_select_replace_killed_after_each_commit_leaves_old_or_new(tmp_path, paired_store):
    template = copy_of(paired_store, tmp_path / "with-subset")
    assert run(["select", "top", "--by", "score_margin", "--k", "60", "--name", "s", *store_args(template)])[0] == 0
    old = open_store(template.uri, create=False)
    from pairsift.select.subsets import load_subset

    old_manifest, old_members = load_subset(old, "s")
    args = ["select", "random", "--name", "s", "--replace", "--seed", "7"]

    def after_kill(store, n):
        counts = check_store(store, export_dir=tmp_path / f"x{n}")
        manifest, members = load_subset(open_store(store.uri, create=False), "s")
        assert counts["subsets"]["s"] == members.num_rows > 0
        if manifest.strategy == old_manifest.strategy:  # the old state, whole
            assert members.column("pair_id").to_pylist() == old_members.column("pair_id").to_pylist()
        else:  # the new state, whole
            assert manifest.strategy == "random" and manifest.seed == 7
        assert run([*args, *store_args(store)])[0] == 0
        check_store(store, export_dir=tmp_path / f"y{n}")

    kill_points(args, lambda n: copy_of(Path(template.uri), tmp_path / f"s{n}"), after_kill)


def test_pairs_killed_after_each_commit(tmp_path):
    f = write_pairs_file(tmp_path / "a.jsonl", pairs_records(0, 150))
    reference = Store(tmp_path / "reference")
    assert run(["ingest", str(f), *store_args(reference)])[0] == 0
    template = Path(tmp_path / "template")
    shutil.copytree(reference.uri, template)
    assert run(["pairs", *store_args(reference)])[0] == 0
    want = snapshot(reference)["pair_features"]

    def after_kill(store, n):
        check_store(store)
        assert run(["pairs", *store_args(store)])[0] == 0
        check_store(store)
        assert snapshot(store)["pair_features"] == want

    kill_points(["pairs"], lambda n: copy_of(template, tmp_path / f"s{n}"), after_kill)


def add_fake_embeddings(store: Store, name: str, dim: int = 4) -> None:
    """A response embedding set written straight through the store's writer."""
    import numpy as np

    ids = store.dataset("responses").to_table(columns=["response_id"]).column(0)
    rng = np.random.default_rng(len(name))
    vecs = rng.normal(size=(len(ids), dim)).astype(np.float32)
    schema = embeddings_schema(dim, {"model": name, "target": "responses"})
    table = pa.table(
        {
            "id": ids,
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), dim),
            "n_tokens": pa.array([1] * len(ids), pa.int32()),
            "truncated": [False] * len(ids),
        },
        schema=schema,
    )
    with store.writer() as w:
        w.append(f"embeddings_{name}", table, schema)


def test_pairs_adding_a_set_killed_after_each_commit(tmp_path, paired_store):
    """A new set adds columns to every existing row (Merge), then new prompts are appended."""
    template = copy_of(paired_store, tmp_path / "template2")
    add_fake_embeddings(template, "later")
    more = write_pairs_file(tmp_path / "more.jsonl", pairs_records(500, 540))
    assert run(["ingest", str(more), *store_args(template)])[0] == 0
    add_fake_embeddings(template, "later")  # vectors for the new responses too (keyed: no dups)

    def complete(store):
        s = open_store(store.uri, create=False)
        df = s.scan("pair_features").select("pair_id", "cos_later").collect()
        assert df.height == 160 and df["cos_later"].null_count() == 0

    def after_kill(store, n):
        check_store(store)
        assert run(["pairs", *store_args(store)])[0] == 0
        check_store(store)
        complete(store)

    kill_points(["pairs"], lambda n: copy_of(Path(template.uri), tmp_path / f"s{n}"), after_kill)


def test_labels_arriving_after_pairs_reorient_existing_rows(tmp_path):
    """#7: an ingest killed after its first table commit let `pairs` build rows without labels;
    completing the ingest then added nothing and the labels stayed null for good."""
    store = Store(tmp_path / "store")
    rc, _, _ = run(["ingest", str(HH_SAMPLE), *store_args(store)], PAIRSIFT_TEST_KILL_AFTER_COMMIT="2")
    assert rc == KILLED  # responses committed; pairs and prompts not
    assert run(["pairs", *store_args(store)])[0] == 0
    s = open_store(store.uri, create=False)
    assert s.scan("pair_features").collect()["label_source"].null_count() == 308  # no label yet
    assert run(["ingest", str(HH_SAMPLE), *store_args(store)])[0] == 0  # the ingest completes
    rc, _, err = run(["pairs", *store_args(store)])
    assert rc == 0, err
    df = s.scan("pair_features").select("label", "label_source", "orientable").collect()
    assert df.height == 308 and (df["label_source"] == "dataset").all() and df["orientable"].all()
    check_store(store)
    # the same pairs built in one go
    ref = Store(tmp_path / "ref")
    assert run(["ingest", str(HH_SAMPLE), *store_args(ref)])[0] == 0
    assert run(["pairs", *store_args(ref)])[0] == 0
    cols = ["pair_id", "label", "label_source", "orientable"]
    got = s.scan("pair_features").select(cols).collect().sort("pair_id")
    exp = open_store(ref.uri, create=False).scan("pair_features").select(cols).collect().sort("pair_id")
    assert got.equals(exp)


def test_embed_killed_after_each_chunk_commit(tmp_path):
    from tests.compute.helpers import tiny_gpt2_dir

    model = tiny_gpt2_dir(tmp_path / "models")
    f = write_pairs_file(tmp_path / "a.jsonl", pairs_records(0, 100))
    template = Store(tmp_path / "template")
    assert run(["ingest", str(f), *store_args(template)])[0] == 0
    args = ["embed", "--model", str(model), "--name", "tiny", "--device", "cpu", "--chunk-rows", "64"]

    def after_kill(store, n):
        check_store(store)
        assert run([*args, *store_args(store)])[0] == 0
        counts = check_store(store)
        assert counts["tables"]["embeddings_tiny"] == 200

    commits = kill_points(args, lambda n: copy_of(Path(template.uri), tmp_path / f"s{n}"), after_kill)
    assert commits >= 2  # the set's creation, then one commit per chunk


def test_optimize_killed_after_each_commit(tmp_path, paired_store):
    template = copy_of(paired_store, tmp_path / "template3")
    for i in range(3):  # several small fragments to compact
        f = write_pairs_file(tmp_path / f"m{i}.jsonl", pairs_records(1000 + 10 * i, 1010 + 10 * i))
        assert run(["ingest", str(f), *store_args(template)])[0] == 0
    assert run(["select", "random", "--name", "s", *store_args(template)])[0] == 0
    want = snapshot(template)

    def after_kill(store, n):
        check_store(store, export_dir=tmp_path / f"x{n}")
        assert snapshot(store) == want
        assert run(["optimize", "--keep-days", "0", *store_args(store)])[0] == 0
        check_store(store, export_dir=tmp_path / f"y{n}")
        assert snapshot(store) == want

    kill_points(["optimize", "--keep-days", "0"], lambda n: copy_of(Path(template.uri), tmp_path / f"s{n}"),
                after_kill)
