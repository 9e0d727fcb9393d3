"""Log-probs equal a plain per-sequence forward AND TRL 1.16's DPOTrainer; rewards equal a per-text
forward; resume and provenance."""

from __future__ import annotations

import copy
import json
import time

import numpy as np
import pytest

from tests.compute.helpers import put_corpus, tiny_gpt2_dir, tiny_reward_dir

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from pairsift.compute.score import score_logprobs, score_rewards  # noqa: E402


def _rows(store, table, key="response_id"):
    return {r[key]: r for r in store.scan(table).collect().iter_rows(named=True)}


def _joined(store):
    r = store.scan("responses").select("response_id", "prompt_id", "text").collect()
    p = store.scan("prompts").select("prompt_id", "text").collect().rename({"text": "prompt_text"})
    return r.join(p, on="prompt_id")


def reference_logprob(net, tok, prompt, response, max_length):
    """Plain per-sequence teacher forcing: full logits, log_softmax, sum over completion tokens."""
    completion = response if response.endswith(tok.eos_token) else response + tok.eos_token
    prompt_ids = tok(prompt)["input_ids"]
    full = tok(prompt + completion)["input_ids"]
    start = 0
    while start < min(len(prompt_ids), len(full)) and prompt_ids[start] == full[start]:
        start += 1
    if start >= max_length:
        return None, 0, full[start:]
    seq = full[:max_length]
    with torch.no_grad():
        logits = net(input_ids=torch.tensor([seq])).logits[0].double()
    lp = logits.log_softmax(-1)
    total = sum(lp[t - 1, seq[t]].item() for t in range(max(start, 1), len(seq)))
    return total, len(seq) - max(start, 1), full[start:]


def test_logprobs_equal_per_sequence_forward(tmp_store, models_dir):
    put_corpus(tmp_store, n_prompts=8, k=3, extra=[("Human: hi Assistant:", ["", " ok"])])
    path = tiny_gpt2_dir(models_dir)
    report = score_logprobs(tmp_store, str(path), name="ref", max_length=48, batch_tokens=200, chunk_rows=5,
                            window_rows=7)
    assert report.written == report.rows_total == 26
    assert report.empty == 1 and report.truncated > 0
    net = transformers.AutoModelForCausalLM.from_pretrained(path).eval()
    tok = transformers.AutoTokenizer.from_pretrained(path)
    got = _rows(tmp_store, "logprobs_ref")
    too_long = 0
    for row in _joined(tmp_store).iter_rows(named=True):
        ref, n, comp = reference_logprob(net, tok, row["prompt_text"], row["text"], 48)
        g = got[row["response_id"]]
        assert g["token_ids"] == comp
        if ref is None:
            too_long += 1
            assert g["logp_sum"] is None and g["n_tokens"] == 0
            continue
        assert g["n_tokens"] == n
        assert abs(g["logp_sum"] - ref) < 1e-4
        assert abs(g["logp_mean"] - ref / n) < 1e-4
    assert too_long == report.prompt_too_long


@pytest.mark.slow
@pytest.mark.shared
def test_stories260k_logprobs_equal_per_sequence_forward(tmp_store, stories_model):
    put_corpus(tmp_store, n_prompts=5, k=2)
    score_logprobs(tmp_store, str(stories_model), name="s", max_length=128, batch_tokens=300)
    net = transformers.AutoModelForCausalLM.from_pretrained(stories_model).eval()
    tok = transformers.AutoTokenizer.from_pretrained(stories_model)
    got = _rows(tmp_store, "logprobs_s")
    for row in _joined(tmp_store).iter_rows(named=True):
        ref, n, comp = reference_logprob(net, tok, row["prompt_text"], row["text"], 128)
        assert abs(got[row["response_id"]]["logp_sum"] - ref) < 1e-4
        assert got[row["response_id"]]["token_ids"] == comp


def _trl_logps(path, rows, max_length):
    """Reference log-probs of chosen and rejected as TRL's DPOTrainer computes them."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    net = transformers.AutoModelForCausalLM.from_pretrained(path)
    tok = transformers.AutoTokenizer.from_pretrained(path)
    cfg = DPOConfig(output_dir="/tmp/pairsift-trl-check", report_to="none", use_cpu=True, bf16=False,
                    max_length=max_length, per_device_train_batch_size=2, save_strategy="no")
    trainer = DPOTrainer(model=net, ref_model=copy.deepcopy(net), args=cfg,
                         train_dataset=Dataset.from_list(rows), processing_class=tok)
    ds = trainer.train_dataset
    out = []
    for i in range(len(ds)):
        batch = trainer.data_collator([ds[i]])
        c, r = trainer.compute_ref_log_probs(trainer.ref_model, batch)
        out.append((float(c[0]), float(r[0]), ds[i]["chosen_ids"], ds[i]["rejected_ids"]))
    return out


@pytest.mark.parametrize("chat", [False, True])
def test_logprobs_equal_trl_dpo_trainer(tmp_store, models_dir, chat):
    prompts, responses = put_corpus(tmp_store, n_prompts=6, k=2, chat=chat)
    path = tiny_gpt2_dir(models_dir)
    max_length = 96
    report = score_logprobs(tmp_store, str(path), name="ref", max_length=max_length, batch_tokens=300)
    assert report.chat_template is chat and report.provenance["chat_template"] is chat
    got = _rows(tmp_store, "logprobs_ref")
    by_prompt = {}
    for r in responses:
        by_prompt.setdefault(r["prompt_id"], []).append(r)
    rows, keys = [], []
    for p in prompts:
        a, b = by_prompt[p["prompt_id"]]
        if chat:
            rows.append({"prompt": p["messages"], "chosen": a["messages"], "rejected": b["messages"]})
        else:
            rows.append({"prompt": p["text"], "chosen": a["text"], "rejected": b["text"]})
        keys.append((a["response_id"], b["response_id"]))
    trl = _trl_logps(path, rows, max_length)
    assert len(trl) == len(keys)  # no prompt was dropped as too long
    for (ca, rb), (c, r, c_ids, r_ids) in zip(keys, trl):
        assert abs(got[ca]["logp_sum"] - c) < 1e-4
        assert abs(got[rb]["logp_sum"] - r) < 1e-4
        assert got[ca]["token_ids"] == list(c_ids) and got[rb]["token_ids"] == list(r_ids)


def test_logprobs_resume_and_provenance(tmp_store, models_dir):
    from pairsift.errors import UsageError
    from pairsift.store.schema import provenance

    put_corpus(tmp_store, n_prompts=15, k=3)
    path = tiny_gpt2_dir(models_dir)
    calls = []

    def crash(done, total, note):
        calls.append(done)
        if len(calls) == 4:
            # Chunks are committed by a writer thread: crash once one is in (what the test needs).
            for _ in range(600):
                if tmp_store.count("logprobs_p"):
                    break
                time.sleep(0.05)
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError):
        score_logprobs(tmp_store, str(path), name="p", batch_tokens=150, chunk_rows=4, max_length=64, progress=crash)
    before = tmp_store.count("logprobs_p")
    assert 0 < before < 45
    report = score_logprobs(tmp_store, str(path), name="p", batch_tokens=150, chunk_rows=4, max_length=64)
    assert report.already_done == before and report.written == 45 - before
    ids = tmp_store.scan("logprobs_p").select("response_id").collect().get_column("response_id")
    assert ids.len() == ids.n_unique() == 45
    prov = provenance(tmp_store.table("logprobs_p").schema)
    assert prov["method"] == "teacher_forcing" and prov["max_length"] == 64 and prov["chat_template"] is False
    assert prov["truncation"] == "keep_start" and "fingerprint" in prov
    with pytest.raises(UsageError, match="--name"):
        score_logprobs(tmp_store, str(path), name="p", max_length=32)


def test_rewards_equal_per_text_forward(tmp_store, models_dir):
    put_corpus(tmp_store, n_prompts=8, k=3)
    path = tiny_reward_dir(models_dir)
    report = score_rewards(tmp_store, str(path), name="rm", max_length=40, batch_tokens=200, chunk_rows=6,
                           window_rows=10)
    assert report.written == 24 and report.truncated > 0
    net = transformers.AutoModelForSequenceClassification.from_pretrained(path).eval()
    tok = transformers.AutoTokenizer.from_pretrained(path)
    got = _rows(tmp_store, "rewards_rm")
    for row in _joined(tmp_store).iter_rows(named=True):
        ids = tok(row["prompt_text"] + row["text"], truncation=True, max_length=40)["input_ids"]
        with torch.no_grad():
            ref = net(input_ids=torch.tensor([ids])).logits[0, 0].item()
        assert abs(got[row["response_id"]]["reward"] - ref) < 1e-5
        assert got[row["response_id"]]["truncated"] == (len(tok(row["prompt_text"] + row["text"])["input_ids"]) > 40)


def test_cli_score(tmp_path, models_dir):
    from click.testing import CliRunner

    from pairsift.cli import cli
    from pairsift.store import open_store

    store = open_store(tmp_path / "s")
    put_corpus(store, n_prompts=3, k=2)
    lm, rm = tiny_gpt2_dir(models_dir), tiny_reward_dir(models_dir)
    s = str(tmp_path / "s")
    res = CliRunner().invoke(cli, ["score", "logprobs", "--store", s, "--model", str(lm), "--as", "ref", "--json",
                                   "--max-length", "64"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["written"] == 6
    res = CliRunner().invoke(cli, ["score", "reward", "--store", s, "--model", str(rm), "--as", "rm"])
    assert res.exit_code == 0, res.output
    assert "rewards_rm: 6 rows written" in res.stdout
    assert np.isfinite(store.scan("rewards_rm").collect().get_column("reward").to_numpy()).all()


@pytest.mark.slow
def test_ingested_hh_sample_end_to_end(tmp_store, models_dir):
    """The real ingest pipeline's output feeds embed and both scores; every response gets a row."""
    from pairsift.compute.embed import embed
    from pairsift.ingest.pipeline import ingest
    from tests.conftest import HH_SAMPLE

    if not HH_SAMPLE.exists():
        pytest.skip("sample data absent")
    ingest(tmp_store, HH_SAMPLE)
    n = tmp_store.count("responses")
    lm, rm = tiny_gpt2_dir(models_dir), tiny_reward_dir(models_dir)
    assert embed(tmp_store, str(lm), max_length=64).written == n
    assert score_logprobs(tmp_store, str(lm), name="ref", max_length=128).written == n
    assert score_rewards(tmp_store, str(rm), max_length=128).written == n
    lp = tmp_store.scan("logprobs_ref").collect()
    assert lp.get_column("response_id").n_unique() == n
