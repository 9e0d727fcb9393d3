"""A real 30-layer instruction-tuned chat model (SmolLM2-135M-Instruct) through every model-backed
command `compare` relies on: REAL response embeddings, log-probs with the chat template exactly as
TRL computes them, DPO training and eval. Slow (minutes on 2 CPU cores); skipped without ../shared.

The references load the model in float32: transformers 5 loads this bf16 checkpoint in bf16 by
default (``dtype="auto"``), which alone moves summed log-probs by ~0.3 nats; pairsift loads in
fp32 on CPU (bf16 on GPU) and records the dtype in every set's provenance.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from tests.compute.helpers import put_corpus

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

pytestmark = [pytest.mark.slow, pytest.mark.shared, pytest.mark.llm]


def test_real_response_embeddings_equal_a_per_text_reference(tmp_store, smollm2):
    from pairsift.compute.embed import embed

    put_corpus(tmp_store, n_prompts=3, k=2, extra=[("Human: hi Assistant:", ["", " Sure, here is a longer answer. " * 12])])
    report = embed(tmp_store, str(smollm2), name="smol", max_length=64, batch_tokens=256)
    prov = report.provenance
    assert prov["model_class"] == "LlamaModel" and prov["dim"] == 576 and prov["dtype"] == "float32"
    assert report.blank == 1 and report.truncated == 1
    net = transformers.AutoModel.from_pretrained(smollm2, dtype=torch.float32).eval()
    tok = transformers.AutoTokenizer.from_pretrained(smollm2)
    texts = dict(tmp_store.scan("responses").select("response_id", "text").collect().iter_rows())
    for row in tmp_store.scan("embeddings_smol").collect().iter_rows(named=True):
        text = texts[row["id"]]
        if not text.strip():
            assert row["vector"] is None
            continue
        ids = tok(text, truncation=True, max_length=64)["input_ids"]
        with torch.no_grad():
            h = net(input_ids=torch.tensor([ids])).last_hidden_state[0].double()
        ref = (h.mean(0) / h.mean(0).norm()).numpy()
        np.testing.assert_allclose(np.asarray(row["vector"], dtype=np.float64), ref, atol=2e-5)
        assert row["n_tokens"] == len(ids)


def _trl_reference(path, rows, max_length):
    """Chosen/rejected log-probs and completion ids as TRL 1.16's DPOTrainer computes them (fp32)."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    net = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tok = transformers.AutoTokenizer.from_pretrained(path)
    cfg = DPOConfig(output_dir="/tmp/pairsift-trl-smol", report_to="none", use_cpu=True, bf16=False,
                    max_length=max_length, per_device_train_batch_size=1, save_strategy="no")
    trainer = DPOTrainer(model=net, ref_model=copy.deepcopy(net), args=cfg, train_dataset=Dataset.from_list(rows),
                         processing_class=tok)
    out = []
    for ex in trainer.train_dataset:
        c, r = trainer.compute_ref_log_probs(trainer.ref_model, trainer.data_collator([ex]))
        out.append((float(c[0]), float(r[0]), list(ex["chosen_ids"]), list(ex["rejected_ids"])))
    return out


@pytest.mark.parametrize("chat", [True, False], ids=["chat-template", "plain"])
def test_logprobs_equal_trl_with_the_chat_template(tmp_store, smollm2, chat):
    from pairsift.compute.score import score_logprobs

    prompts, responses = put_corpus(tmp_store, n_prompts=3, k=2, chat=chat)
    report = score_logprobs(tmp_store, str(smollm2), name="ref", max_length=192)
    assert report.chat_template is chat
    if chat:
        assert "<|im_start|>" in report.provenance["template"]
    got = {r["response_id"]: r for r in tmp_store.scan("logprobs_ref").collect().iter_rows(named=True)}
    by_prompt: dict[str, list] = {}
    for r in responses:
        by_prompt.setdefault(r["prompt_id"], []).append(r)
    rows, keys = [], []
    for p in prompts:
        a, b = by_prompt[p["prompt_id"]]
        key = "messages" if chat else "text"
        rows.append({"prompt": p[key], "chosen": a[key], "rejected": b[key]})
        keys.append((a["response_id"], b["response_id"]))
    for (ca, rb), (c, r, c_ids, r_ids) in zip(keys, _trl_reference(smollm2, rows, 192)):
        assert got[ca]["token_ids"] == c_ids and got[rb]["token_ids"] == r_ids
        assert got[ca]["logp_sum"] == pytest.approx(c, abs=2e-3) and got[rb]["logp_sum"] == pytest.approx(r, abs=2e-3)


def test_dpo_train_and_eval(tmp_store, smollm2, tmp_path):
    from pairsift.train.config import TrainConfig
    from pairsift.train.evaluate import evaluate
    from pairsift.train.run import train
    from tests.train.helpers import build_corpus, save_subset

    corpus = build_corpus(tmp_store, n_prompts=6, k=2, chat=True)
    save_subset(tmp_store, "sub", corpus, prompt_idx=[1, 2, 4, 5])  # disjoint from "held" (eval checks it)
    save_subset(tmp_store, "held", corpus, prompt_idx=[0, 3], flip={3})
    cfg = TrainConfig(subset="sub", model=str(smollm2), max_steps=1, batch_size=2, logging_steps=1, device="cpu",
                      learning_rate=1e-5, max_length=96, output=str(tmp_path / "run"))
    manifest = train(tmp_store, cfg)
    assert manifest.log_history[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)  # theta = ref at step 1
    report = evaluate(tmp_store, "held", [str(smollm2), str(tmp_path / "run")], str(smollm2), max_length=96,
                      device="cpu")
    base, trained = report.results
    assert base["loss"] == pytest.approx(math.log(2), abs=1e-9) and base["reward_margin_no_beta"] == 0
    assert trained["n_pairs"] == 2 and trained["reward_margin_no_beta"] != 0
