"""embed/score: a re-run with nothing left does not load the model; --max-length follows the model."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from pairsift.cli import cli
from tests.compute.helpers import put_corpus, tiny_gpt2_dir

pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def model(models_dir) -> str:
    """A tiny GPT-2 whose config says n_positions=128 (its context)."""
    return str(tiny_gpt2_dir(models_dir))


@pytest.fixture
def corpus(tmp_path) -> str:
    from pairsift.store import open_store

    uri = str(tmp_path / "store")
    put_corpus(open_store(uri), n_prompts=3, k=2)
    return uri


def cli_in_fresh_process(runs: list[list[str]]) -> list[tuple[int, str, bool]]:
    """(exit code, output, whether torch was imported so far) of each `pairsift ARGS` in `runs`,
    run in order in ONE new interpreter (a fresh process is where an import shows)."""
    code = textwrap.dedent(f"""
        import sys
        from click.testing import CliRunner
        from pairsift.cli import cli
        for args in {runs!r}:
            res = CliRunner().invoke(cli, args)
            print(res.output)
            print("EXIT", res.exit_code, "TORCH", "torch" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300).stdout
    results, chunk = [], []
    for line in out.splitlines():
        if line.startswith("EXIT "):
            tail = line.split()
            results.append((int(tail[1]), "\n".join(chunk), tail[3] == "True"))
            chunk = []
        else:
            chunk.append(line)
    assert len(results) == len(runs), out
    return results


COMMANDS = {"embed": ["embed"], "logprobs": ["score", "logprobs"]}


def test_rerun_with_nothing_left_does_not_load_the_model(corpus, model):
    args = {k: [*c, "--store", corpus, "--model", model, "--name", "t", "--device", "cpu"] for k, c in COMMANDS.items()}
    for a in args.values():
        first = CliRunner().invoke(cli, [*a, "--json"])
        assert first.exit_code == 0, first.output
        report = json.loads(first.stdout)
        assert report["written"] == 6 and report["model_loaded"] is True

    # Re-runs with nothing left, then a changed setup (refused, still without loading anything).
    runs = [*args.values(), *([*a, "--max-length", "32"] for a in args.values())]
    results = cli_in_fresh_process(runs)
    for code, out, torch_loaded in results[:2]:
        assert code == 0, out
        assert "nothing to do, all 6 rows already there" in out and "model was not loaded" in out
        assert not torch_loaded, "the re-run imported torch: it loaded the model"
    for code, out, torch_loaded in results[2:]:
        assert code == 1 and "max_length: 128 -> 32" in out and "--name" in out
        assert not torch_loaded
    for a in args.values():
        res = CliRunner().invoke(cli, [*a, "--dtype", "float16"])
        assert res.exit_code == 1 and "dtype: 'float32' -> 'float16'" in res.stderr


def test_logprobs_max_length_defaults_to_the_model_context(corpus, model):
    from pairsift import open_store
    from pairsift.store.schema import provenance

    res = CliRunner().invoke(cli, ["score", "logprobs", "--store", corpus, "--model", model, "--name", "d"])
    assert res.exit_code == 0, res.output
    prov = provenance(open_store(corpus).table("logprobs_d").schema)
    assert prov["max_length"] == 128  # min(context 128, TRL's 1024), not 1024

    res = CliRunner().invoke(cli, ["score", "logprobs", "--store", corpus, "--model", model, "--name", "e",
                                   "--max-length", "1024"])
    assert res.exit_code == 1
    assert "--max-length 1024: longer than the model's context of 128 tokens" in res.stderr
    assert not open_store(corpus).has_table("logprobs_e")  # refused before anything was written


@pytest.mark.parametrize("command,extra", [(["embed"], []), (["score", "reward"], [])], ids=["embed", "reward"])
def test_max_length_above_context_is_refused_everywhere(corpus, model, command, extra):
    res = CliRunner().invoke(cli, [*command, "--store", corpus, "--model", model, "--max-length", "4096", *extra])
    assert res.exit_code == 1 and "context of 128 tokens" in res.stderr, res.output
