"""Issue 9 #9/#10 and issue 8 #2 (store side): every way a store can be wrong is one `Error:` line,
read-only commands never create a store, and `info` names a damaged table."""

from __future__ import annotations

import glob
import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from pairsift.cli import cli
from pairsift.store import open_store
from tests.conftest import HH_SAMPLE


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_error(res, *expect: str) -> str:
    assert res.exit_code == 1, res.output
    assert isinstance(res.exception, SystemExit), repr(res.exception)
    err = [x for x in res.output.splitlines() if x.startswith("Error: ")]
    assert len(err) == 1 and "Traceback" not in res.output, res.output
    for e in expect:
        assert e in err[0], err[0]
    return err[0]


@pytest.mark.parametrize("command", [["info"], ["subsets"], ["export", "x", "--out", "o.jsonl"],
                                     ["query", "--band", "0", "1"], ["optimize"]])
def test_read_only_commands_never_create_a_store(tmp_path, command, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_error(invoke(*command, "--store", tmp_path / "typo"), "no store at")
    assert not (tmp_path / "typo").exists()


def test_store_option_that_is_empty_or_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_error(invoke("info", "--store", ""), "--store is empty")
    one_error(invoke("ingest", HH_SAMPLE, "--store", ""), "--store is empty")
    assert list(tmp_path.iterdir()) == []  # nothing written into the working directory
    f = tmp_path / "afile"
    f.write_text("not a store")
    one_error(invoke("info", "--store", f), "is a file")
    one_error(invoke("ingest", HH_SAMPLE, "--store", f), "is a file")
    assert f.read_text() == "not a store"


def test_damaged_table_manifest(tmp_path):
    """#9: a corrupted table manifest raised a Rust panic; `info` silently omitted the table."""
    store = tmp_path / "s"
    assert invoke("ingest", HH_SAMPLE, "--store", store).exit_code == 0
    for manifest in glob.glob(str(store / "prompts.lance" / "_versions" / "*.manifest")):
        Path(manifest).write_bytes(b"garbage!" * 20)
    res = invoke("info", "--store", store, "--json")
    assert res.exit_code == 0, res.output
    tables = json.loads(res.output)["tables"]
    assert "damaged" in tables["prompts"] and "prompts" in tables["prompts"]["damaged"]
    assert tables["responses"]["rows"] == 616
    res = invoke("info", "--store", store)
    assert "prompts" in res.output and "DAMAGED" in res.output
    one_error(invoke("ingest", HH_SAMPLE, "--store", store), "table 'prompts'", "damaged")
    assert open_store(store).count("responses") == 616


@pytest.fixture
def mounted(tmp_path):
    """A tmpfs of 2 MiB at tmp_path/mnt (root only: skipped elsewhere)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, check=False).returncode:
        pytest.skip("needs permission to mount a tmpfs (root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def big_corpus(path: Path, n: int) -> Path:
    text = " ".join(["lorem ipsum dolor sit amet"] * 30)
    path.write_text("".join(json.dumps({"prompt": f"p{i} {text}", "chosen": f"a{i} {text}", "rejected": f"b{i} {text}"})
                            + "\n" for i in range(n)))
    return path


def test_disk_full_is_one_error_line_and_leaves_the_store_readable(tmp_path, mounted):
    store = mounted / "store"
    assert invoke("ingest", HH_SAMPLE, "--store", store).exit_code == 0
    before = open_store(store).info()["tables"]
    one_error(invoke("ingest", big_corpus(tmp_path / "big.jsonl", 4000), "--store", store),
              "cannot write", "No space left on device")
    assert open_store(store).info()["tables"] == before


def test_read_only_filesystem_is_one_error_line(tmp_path, mounted):
    store = mounted / "store"
    assert invoke("ingest", HH_SAMPLE, "--store", store).exit_code == 0
    subprocess.run(["mount", "-o", "remount,ro", str(mounted)], check=True)
    small = tmp_path / "one.jsonl"
    small.write_text(json.dumps({"prompt": "new", "chosen": "a", "rejected": "b"}) + "\n")
    one_error(invoke("ingest", small, "--store", store), "cannot write", "Read-only file system")
    one_error(invoke("ingest", small, "--store", mounted / "new-store"), "cannot create store", "Read-only")
    res = invoke("info", "--store", store, "--json")  # reading still works
    assert res.exit_code == 0 and json.loads(res.output)["tables"]["prompts"]["rows"] == 308
