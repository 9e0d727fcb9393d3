"""The README's main command: `pairsift demo` on the embedded default, and its re-run."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from pairsift.cli import cli
from pairsift.demo import format_summary
from tests.conftest import HH_SAMPLE, REPO


@pytest.mark.slow
def test_demo_runs_the_whole_flow_and_reruns_as_a_noop(tmp_path):
    store = str(tmp_path / "store")
    runner = CliRunner()
    result = runner.invoke(cli, ["demo", "--store", store, "--json"])
    assert result.exit_code == 0, result.output
    first = json.loads(result.stdout)
    n = sum(1 for line in open(HH_SAMPLE) if line.strip())
    assert first["ingest"]["pairs_added"] == n
    assert first["cosine"]["pairs"] == n
    assert -1.0 <= first["cosine"]["min"] <= first["cosine"]["median"] <= first["cosine"]["max"] <= 1.0
    easy, hard = first["subsets"]["demo-easy-half"], first["subsets"]["demo-hard-half"]
    candidates = easy["counts"]["candidates"]
    assert easy["pairs"] == hard["pairs"] == candidates // 2
    # blank responses have no embedding: their pairs are counted as excluded, never selected
    assert candidates + easy["counts"]["excluded"].get("null_cos_minilm", 0) == n
    # it ends with a small `pairsift compare` of the halves on held-out prompts, and prints its table
    arms = {c["arm"] for c in first["compare"]["cells"]}
    assert arms == {"easy-half", "hard-half", "random-half"} and all(c["n"] == 5 for c in first["compare"]["cells"])

    blank = first["blank_responses"]
    assert blank == first["ingest"]["blank_responses"] > 0  # a fresh store: every blank response is new
    assert first["embed"]["model_loaded"] is True

    again = runner.invoke(cli, ["demo", "--store", store, "--json"])
    assert again.exit_code == 0, again.output
    second = json.loads(again.stdout)
    assert second["embed"]["model_loaded"] is False  # nothing left to embed: the model is not loaded
    text = format_summary(second)
    assert "+0 new" in text
    # The store's totals, with what this run added beside them: the second run reads like the first.
    assert f"{blank:,} blank response{'s' if blank != 1 else ''} kept and flagged in the store (0 new)" in text
    assert f"subset demo-easy-half (easy-half): {easy['pairs']:,} pairs" in text
    assert "accuracy - random-half" in text and first["compare"]["table"].splitlines()[-1] in text


def test_readme_commands_exist():
    """Every `pairsift <command>` the README shows is a real command with help text."""
    readme = (REPO / "README.md").read_text()
    blocks = "\n".join(re.findall(r"```bash\n(.*?)```", readme, flags=re.S))
    shown = set(re.findall(r"(?:^|&& )pairsift ([a-z]+)", blocks, flags=re.M)) | set(
        re.findall(r"`pairsift ([a-z]+)", readme)
    )
    assert {"demo", "ingest", "info"} <= shown
    runner = CliRunner()
    for command in sorted(shown):
        result = runner.invoke(cli, [command, "--help"])
        assert result.exit_code == 0, (command, result.output)
    for command in cli.commands:
        assert command in shown, f"`pairsift {command}` is not documented in README.md"
