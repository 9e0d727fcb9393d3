"""The public API: every re-exported name resolves, and importing pairsift stays light."""

from __future__ import annotations

import subprocess
import sys

import pairsift


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
