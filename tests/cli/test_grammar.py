"""Subset as the positional argument, old spellings warned for one release, errors as one line."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from pairsift.cli import cli
from pairsift.errors import IntegrityError, PairsiftError, SchemaError, SubsetNotFound


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_missing_subset_is_its_own_error(sample_store):
    from pairsift import open_store
    from pairsift.select.subsets import load_subset

    store = open_store(sample_store)
    with pytest.raises(SubsetNotFound, match=r"no subset named 'nope' \(subsets: r\)") as err:
        load_subset(store, "nope")
    assert isinstance(err.value, KeyError) and isinstance(err.value, PairsiftError)
    assert str(err.value).startswith("no subset named")  # not KeyError's quoted repr
    res = run("export", "nope", "--out", "x.jsonl", "--store", sample_store)
    assert res.exit_code == 1 and res.stderr.strip() == f"Error: {err.value}"
    assert "Traceback" not in res.output


def test_integrity_error_is_not_a_schema_error():
    assert issubclass(IntegrityError, PairsiftError) and issubclass(IntegrityError, ValueError)
    assert not issubclass(IntegrityError, SchemaError)
    import pyarrow as pa

    from pairsift.store.ids import id_keys

    with pytest.raises(IntegrityError, match="32 lowercase hex"):
        id_keys(pa.array(["not-an-id"]))


@pytest.mark.parametrize("command", ["stability", "eval"])
def test_old_subset_option_still_works_with_a_warning(sample_store, command):
    extra = ["--models", "m"] if command == "stability" else ["--model", "m", "--ref-model", "m"]
    res = run(command, "--subset", "nope", *extra, "--store", sample_store)
    assert "--subset is deprecated" in res.stderr and f"pairsift {command} SUBSET" in res.stderr
    # the subset is read before any model is loaded: the old option's value was the one used
    assert res.exit_code == 1 and "no subset named 'nope'" in res.stderr
    both = run(command, "r", "--subset", "other", *extra, "--store", sample_store)
    assert both.exit_code == 2 and "given twice" in both.output
    neither = run(command, *extra, "--store", sample_store)
    assert neither.exit_code == 2 and "Missing argument 'SUBSET'" in neither.output


def test_positional_subset(sample_store):
    res = run("stability", "nope", "--models", "m", "--store", sample_store)
    assert res.exit_code == 1 and "no subset named 'nope'" in res.stderr and "deprecated" not in res.stderr


def test_score_as_still_works_with_a_warning(sample_store, tmp_path):
    res = run("score", "logprobs", "--model", str(tmp_path / "absent"), "--as", "ref", "--store", sample_store)
    assert "--as is deprecated" in res.stderr and "--name" in res.stderr
    assert res.exit_code == 1 and "no such model directory" in res.stderr
    res = run("score", "reward", "--model", "m", "--name", "a", "--as", "b", "--store", sample_store)
    assert res.exit_code == 2 and "disagree" in res.output


def test_plurals_in_summaries(sample_store):
    res = run("subsets", "--store", sample_store)
    assert res.exit_code == 0 and " pairs " in res.stdout
    from pairsift.report import plural

    assert plural(1, "pair") == "1 pair" and plural(2, "pair") == "2 pairs" and plural(1_234, "prompt") == "1,234 prompts"
    assert plural(1, "blank response") == "1 blank response" and plural(0, "pair") == "0 pairs"


def test_json_reports_on_stdout_only(sample_store):
    res = run("subsets", "--store", sample_store, "--json")
    assert [r["name"] for r in json.loads(res.stdout)] == ["r"]
