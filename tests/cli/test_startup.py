"""`pairsift --help`, `--version` and argument errors import nothing heavy (issue 12 item 3).

Checked with ``python -X importtime``, in a fresh interpreter, exactly as a user starts it. No
timing assertion here: the figures are in benchmarks/bench_startup.py and BENCHMARKS.md.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

#: Modules whose import is what made `pairsift --help` take seconds (lancedb alone ~1 s quiet).
HEAVY = ("lancedb", "lance", "lance_namespace", "pyarrow.compute", "pyarrow.dataset", "polars", "torch",
         "transformers", "trl", "datasets", "matplotlib")


def imported(args: list[str]) -> tuple[set[str], subprocess.CompletedProcess]:
    """Modules `python -X importtime -m pairsift.cli ARGS` imports, and the finished process."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "pairsift.cli", *args],
                          capture_output=True, text=True, timeout=120)
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "package":  # the header line
                names.add(name)
    return names, proc


@pytest.mark.parametrize(
    "args,code,says",
    [
        (["--help"], 0, "Commands:"),
        (["--version"], 0, "version"),
        (["select", "nope", "--name", "x"], 2, "Invalid value"),
        (["embed", "--device", "gpu0"], 2, "expected auto, cpu, cuda or cuda:N"),
        (["no-such-command"], 2, "No such command"),
        (["train", "--help"], 0, "Example:"),
        (["score", "logprobs", "--help"], 0, "Example:"),
    ],
    ids=["help", "version", "bad-choice", "bad-device", "bad-command", "train-help", "score-help"],
)
def test_instant_paths_import_nothing_heavy(args, code, says):
    names, proc = imported(args)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert says in proc.stdout + proc.stderr
    assert "pairsift.cli" in names  # the parse above really saw the import log
    heavy = sorted(n for n in names if n in HEAVY or n.split(".")[0] in {h for h in HEAVY if "." not in h})
    assert not heavy, f"`pairsift {' '.join(args)}` imports {heavy}"


def test_import_pairsift_is_light():
    code = ("import sys, pairsift; pairsift.PairsiftError; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lancedb', 'lance', 'polars', 'torch')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    code = "import pairsift; from pairsift.store.store import open_store; print(pairsift.open_store is open_store)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"  # the lazy name still resolves to the real store (which loads lancedb on use)
