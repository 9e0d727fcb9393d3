"""The public API: every re-exported name resolves, and importing pairsift stays light."""

from __future__ import annotations

import subprocess
import sys

import pairsift
from tests.conftest import HH_SAMPLE


def test_every_public_name_resolves():
    for name in pairsift.__all__:
        assert callable(getattr(pairsift, name)) or name == "__version__", name


def test_light_paths_never_import_the_model_stack(tmp_path):
    """One fresh interpreter, three checks in the order a user meets them: the label room imports
    no training, models or CLI; the library's data path (ingest, pairs, select, export, query)
    imports no torch; the light commands (ingest, info, pairs, select, subsets, export) run
    without torch, transformers, trl or datasets."""
    code = f"""
import sys
heavy = lambda names: sorted(m for m in names if m in sys.modules)
import pairsift.label.importing, pairsift.label.resolve, pairsift.label.stats, pairsift.label.formats
import pairsift.label.server.app
print("label", heavy(("torch", "transformers", "trl", "pairsift.train", "pairsift.cli")))
import pairsift
pairsift.ingest_file; pairsift.build_pairs; pairsift.select_subset; pairsift.export; pairsift.query_band
print("api", heavy(("torch", "transformers", "trl")))
from pairsift.cli import cli
store = {str(tmp_path / 's')!r}
sample = {str(HH_SAMPLE)!r}
for args in (["ingest", sample], ["info"], ["pairs"], ["select", "random-half", "--name", "r"],
             ["subsets"], ["export", "r", "--out", {str(tmp_path / 'r.jsonl')!r}]):
    cli([*args, "--store", store], standalone_mode=False)
print("cli", heavy(("torch", "transformers", "trl", "datasets")))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert [line for line in out.splitlines() if line.split(" ")[0] in ("label", "api", "cli")] == [
        "label []", "api []", "cli []"]
    assert (tmp_path / "r.jsonl").read_text().count("\n") > 0
