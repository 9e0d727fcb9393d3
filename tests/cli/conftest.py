"""A small real store for the CLI tests: the bundled HH sample, pair features, one subset (no torch)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from pairsift.cli import cli
from tests.conftest import HH_SAMPLE


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory) -> str:
    """Store URI holding the sample, its pair features and subset 'r' (random-half)."""
    uri = str(tmp_path_factory.mktemp("cli") / "store")
    runner = CliRunner()
    for args in (["ingest", str(HH_SAMPLE)], ["pairs"], ["select", "random-half", "--name", "r"]):
        res = runner.invoke(cli, [*args, "--store", uri])
        assert res.exit_code == 0, res.output
    return uri
