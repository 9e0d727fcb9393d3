"""`torchrun --nproc_per_node=2` (gloo on CPU) runs embed / score logprobs as two ranks, one set,
the same rows as one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pairsift.store import open_store
from tests.compute.helpers import put_corpus
from tests.conftest import REPO
from tests.distributed.conftest import assert_same_table

pytest.importorskip("torch")

from pairsift.compute.embed import embed  # noqa: E402
from pairsift.compute.score import score_logprobs  # noqa: E402


def torchrun(*args: str) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "pairsift.cli", *args, "--device", "cpu", "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-4000:]
    return json.loads(res.stdout)  # rank 0 alone prints the report


@pytest.mark.slow
def test_two_ranks_equal_one_process(tmp_path, models):
    a, b = open_store(tmp_path / "ranks"), open_store(tmp_path / "one")
    for s in (a, b):
        put_corpus(s, n_prompts=20, k=3, extra=[("Human: hi Assistant:", ["", " ok"])])
    lm = str(models["lm"])
    rep = torchrun("embed", "--store", a.uri, "--model", lm, "--name", "e", "--max-length", "40",
                   "--batch-tokens", "200", "--chunk-rows", "8")
    assert rep["executor"] == "torch.distributed" and rep["workers"] == 2
    assert rep["written"] == rep["rows_total"] == 62 and rep["blank"] == 1
    ref = embed(b, lm, name="e", max_length=40, batch_tokens=200)
    assert (rep["truncated"], rep["tokens"]) == (ref.truncated, ref.tokens)
    assert_same_table(a.scan("embeddings_e").collect(), b.scan("embeddings_e").collect(), "id")

    rep = torchrun("score", "logprobs", "--store", a.uri, "--model", lm, "--name", "ref", "--max-length", "48",
                   "--batch-tokens", "200", "--chunk-rows", "8")
    ref = score_logprobs(b, lm, name="ref", max_length=48, batch_tokens=200)
    for k in ("written", "empty", "truncated", "prompt_too_long", "tokens"):
        assert rep[k] == getattr(ref, k), k
    assert_same_table(a.scan("logprobs_ref").collect(), b.scan("logprobs_ref").collect(), "response_id")
    # A re-run (any executor) finds the set complete.
    again = torchrun("score", "logprobs", "--store", a.uri, "--model", lm, "--name", "ref", "--max-length", "48")
    assert again["already_done"] == 62 and again["written"] == 0
