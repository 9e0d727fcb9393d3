"""The public API: every re-exported name resolves, and importing pairsift stays light."""

from __future__ import annotations

import subprocess
import sys

import pairsift
from tests.conftest import HH_SAMPLE


def test_every_public_name_resolves():
    for name in pairsift.__all__:
        assert callable(getattr(pairsift, name)) or name == "__version__", name


def test_import_and_select_path_do_not_import_torch():
    code = (
        "import sys, pairsift; pairsift.ingest_file; pairsift.build_pairs; pairsift.select_subset; "
        "pairsift.export; pairsift.query_band; "
        "print(sorted(m for m in ('torch', 'transformers', 'trl') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_light_commands_do_not_import_torch(tmp_path):
    """ingest, info, pairs, select, subsets and export run without torch, transformers or trl."""
    code = f"""
import sys
from pairsift.cli import cli
store = {str(tmp_path / 's')!r}
sample = {str(HH_SAMPLE)!r}
for args in (["ingest", sample], ["info"], ["pairs"], ["select", "random-half", "--name", "r"],
             ["subsets"], ["export", "r", "--out", {str(tmp_path / 'r.jsonl')!r}]):
    cli([*args, "--store", store], standalone_mode=False)
print(sorted(m for m in ("torch", "transformers", "trl") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "r.jsonl").read_text().count("\n") > 0
