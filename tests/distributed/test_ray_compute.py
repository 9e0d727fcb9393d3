"""embed / score on a real Ray cluster equal the single-process path; kill -9, concurrent drivers, S3.

Every test compares against the single-process functions on a second store holding the same
corpus (same ids; floats within 1e-5): those are themselves checked against plain per-text
references in tests/compute.
"""

from __future__ import annotations

import json
import signal

import pytest

from pairsift.errors import UsageError
from pairsift.store import open_store
from tests.compute.helpers import put_corpus
from tests.conftest import S3_BUCKET
from tests.distributed.conftest import assert_same_table, run_cli, run_driver

pytestmark = pytest.mark.ray
pytest.importorskip("torch")

from pairsift.compute.distributed.cluster import RayConfig  # noqa: E402
from pairsift.compute.distributed.ray_jobs import embed_ray, score_logprobs_ray, score_rewards_ray  # noqa: E402
from pairsift.compute.embed import embed  # noqa: E402
from pairsift.compute.score import score_logprobs, score_rewards  # noqa: E402

EXTRA = [("Human: hi Assistant:", ["", "  \n", " ok"])]  # blank responses: null vectors, empty log-probs


def two_stores(tmp_path, **corpus):
    a, b = open_store(tmp_path / "ray"), open_store(tmp_path / "local")
    put_corpus(a, **corpus)
    put_corpus(b, **corpus)
    return a, b


def same_counts(ray_report, local_report, keys) -> None:
    for k in keys:
        assert getattr(ray_report, k) == getattr(local_report, k), k


def test_embed_on_ray_equals_one_process(tmp_path, ray_address, models):
    a, b = two_stores(tmp_path, n_prompts=20, k=3, extra=EXTRA)
    lm = str(models["lm"])
    # Small batches and chunks: 8 fragments from 2 actors, several commits.
    rep = embed_ray(a, lm, max_length=40, batch_tokens=200, chunk_rows=10, ray=RayConfig(workers=2, batch_rows=8))
    ref = embed(b, lm, max_length=40, batch_tokens=200)
    same_counts(rep, ref, ("table", "rows_total", "written", "blank", "truncated", "tokens"))
    assert rep.written == 63 and rep.blank == 2 and rep.truncated > 0
    assert rep.executor == "ray" and rep.workers == 2 and rep.commits >= 3
    t = rep.table
    assert_same_table(a.scan(t).collect(), b.scan(t).collect(), "id")
    # The same provenance: one process resumes the set Ray wrote, and finds nothing to do.
    again = embed(a, lm, max_length=40)
    assert again.already_done == 63 and again.written == 0


def test_scores_on_ray_equal_one_process(tmp_path, ray_address, models):
    # Chat prompts/responses: log-probs through the tokenizer's chat template (TRL's rule).
    a, b = two_stores(tmp_path / "chat", n_prompts=12, k=3, chat=True)
    lm = str(models["lm"])
    rep = score_logprobs_ray(a, lm, name="ref", max_length=128, batch_tokens=300, chunk_rows=8,
                             ray=RayConfig(workers=1, batch_rows=5))
    ref = score_logprobs(b, lm, name="ref", max_length=128, batch_tokens=300)
    assert rep.chat_template is True
    same_counts(rep, ref, ("rows_total", "written", "empty", "truncated", "prompt_too_long", "tokens"))
    assert_same_table(a.scan("logprobs_ref").collect(), b.scan("logprobs_ref").collect(), "response_id")
    # Plain text with a blank response: rewards.
    a, b = two_stores(tmp_path / "plain", n_prompts=12, k=3, extra=EXTRA)
    rm = str(models["rm"])
    rep = score_rewards_ray(a, rm, name="rm", chunk_rows=8, ray=RayConfig(workers=1, batch_rows=5))
    ref = score_rewards(b, rm, name="rm")
    same_counts(rep, ref, ("rows_total", "written", "truncated", "tokens"))
    assert_same_table(a.scan("rewards_rm").collect(), b.scan("rewards_rm").collect(), "response_id")


KILL_AFTER_COMMIT = """
import os, signal
from pairsift.store import open_store
from pairsift.compute.distributed.cluster import RayConfig
from pairsift.compute.distributed.ray_jobs import score_logprobs_ray
store = open_store({uri!r})
def progress(done, total):
    # The driver commits before it reports progress: kill it as soon as a commit is visible.
    if store.has_table("logprobs_k") and store.count("logprobs_k") >= 8:
        os.kill(os.getpid(), signal.SIGKILL)
score_logprobs_ray(store, {model!r}, name="k", max_length=48, batch_tokens=120, chunk_rows=4,
                   ray=RayConfig(address={address!r}, workers=1, batch_rows=4), progress=progress)
"""


def test_driver_killed_after_a_commit_resumes_without_duplicates(tmp_path, ray_address, models):
    a, b = two_stores(tmp_path, n_prompts=25, k=4, extra=EXTRA)
    lm = str(models["lm"])
    proc = run_driver(KILL_AFTER_COMMIT.format(uri=a.uri, model=lm, address=ray_address))
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    before = a.count("logprobs_k")
    assert 8 <= before < 103
    rep = score_logprobs_ray(a, lm, name="k", max_length=48, batch_tokens=120, chunk_rows=16,
                             ray=RayConfig(workers=1, batch_rows=8))
    assert rep.already_done == before and rep.written == 103 - before
    ref = score_logprobs(b, lm, name="k", max_length=48, batch_tokens=120)
    assert ref.written == 103
    assert_same_table(a.scan("logprobs_k").collect(), b.scan("logprobs_k").collect(), "response_id")


CONCURRENT = """
import json
from pairsift.store import open_store
from pairsift.compute.distributed.cluster import RayConfig
from pairsift.compute.distributed.ray_jobs import embed_ray
rep = embed_ray(open_store({uri!r}), {model!r}, name="same", max_length=40, batch_tokens=150, chunk_rows=4,
                ray=RayConfig(address={address!r}, workers=1, batch_rows=4))
print(json.dumps({{k: getattr(rep, k) for k in ("written", "duplicates_removed", "commits")}}))
"""


def test_two_drivers_on_one_set_duplicate_and_lose_nothing(tmp_path, ray_address, models):
    import subprocess
    import sys

    from tests.conftest import REPO

    a, b = two_stores(tmp_path, n_prompts=25, k=4)
    lm = str(models["lm"])
    code = CONCURRENT.format(uri=a.uri, model=lm, address=ray_address)
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=420) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert sum(r["written"] for r in reports) == 100  # each row counted by the job whose copy was kept
    embed(b, lm, name="same", max_length=40, batch_tokens=150)
    assert_same_table(a.scan("embeddings_same").collect(), b.scan("embeddings_same").collect(), "id")


def test_errors_reach_the_cli_as_one_line(tmp_path, ray_address, models):
    store = open_store(tmp_path / "s")
    put_corpus(store, n_prompts=3, k=2)
    # Raised inside the Ray worker that loads the model (the probe): one `Error:` line, no traceback.
    res = run_cli(["score", "reward", "--store", str(tmp_path / "s"), "--model", str(models["rm"]), "--label", "3",
                   "--executor", "ray", "--ray-address", ray_address])
    assert res.returncode == 1
    assert "Error: --label 3: the reward model has 1 output(s)" in res.stderr
    assert "Traceback" not in res.stderr
    embed(store, str(models["lm"]), name="x", max_length=40)
    with pytest.raises(UsageError, match="different setup"):  # checked by the driver before any work
        embed_ray(store, str(models["lm"]), name="x", max_length=32, ray=RayConfig(workers=1))


def test_s3_store_with_credentials_from_the_environment(tmp_path, ray_address, models, s3):
    """The whole job on an S3-compatible server: the driver and the workers find the store through
    AWS_* environment variables only (the workers get them through the job's runtime_env)."""
    endpoint, env = s3
    opts = {"aws_access_key_id": "test", "aws_secret_access_key": "test", "region": "us-east-1",
            "endpoint": endpoint, "allow_http": "true"}
    uri = f"s3://{S3_BUCKET}/embed-store"
    remote, local = open_store(uri, opts), open_store(tmp_path / "local")
    for s in (remote, local):
        put_corpus(s, n_prompts=10, k=3)
    bert = str(models["bert"])
    res = run_cli(["embed", "--store", uri, "--target", "prompts", "--model", bert, "--name", "p", "--max-length",
                   "32", "--executor", "ray", "--ray-address", ray_address, "--json"], env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    rep = json.loads(res.stdout)
    assert rep["written"] == 10 and rep["executor"] == "ray"
    embed(local, bert, target="prompts", name="p", max_length=32)
    assert_same_table(open_store(uri, opts).scan("embeddings_p").collect(),
                      local.scan("embeddings_p").collect(), "id")
