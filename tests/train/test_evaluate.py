"""`pairsift eval` and `pairsift stability` against plain per-pair computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pairsift.store import open_store
from pairsift.train.config import TrainConfig
from pairsift.train.evaluate import evaluate, expand_checkpoints, preference_metrics
from pairsift.train.run import load_model, load_tokenizer, train
from pairsift.train.stability import stability, summarise

from .helpers import build_corpus, save_subset, save_tiny

BETA = 0.1


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One trained tiny run shared by the module's tests (they only read it, or add subsets of
    their own names)."""
    tmp_path = tmp_path_factory.mktemp("trained")
    tmp_store = open_store(tmp_path / "store")
    corpus = build_corpus(tmp_store, n_prompts=12, k=2)
    save_subset(tmp_store, "sub", corpus, prompt_idx=[1, 2, 4, 6, 7, 10, 11])  # disjoint from "held"
    held = save_subset(tmp_store, "held", corpus, prompt_idx=[0, 3, 5, 8, 9], flip={3, 9})
    base = save_tiny(tmp_path / "base")
    run = tmp_path / "run"
    config = TrainConfig(subset="sub", model=base, max_steps=3, batch_size=4, logging_steps=1, save_steps=2,
                         output=str(run), device="cpu", learning_rate=3e-3, max_length=64, beta=BETA)
    train(tmp_store, config)
    return tmp_store, base, run, held


def _plain_logp(model, tok, prompt: str, completion: str) -> float:
    """Sum of completion-token log-probs, one sequence at a time, from full logits."""
    p = tok(prompt)["input_ids"]
    full = tok(prompt + completion + tok.eos_token)["input_ids"]
    k = 0
    while k < min(len(p), len(full)) and p[k] == full[k]:
        k += 1
    with torch.no_grad():
        logits = model(torch.tensor([full])).logits[0].double()
    logp = torch.log_softmax(logits[:-1], dim=-1)
    return float(sum(logp[t - 1, full[t]] for t in range(k, len(full))))


def test_eval_matches_a_plain_computation(trained):
    store, base, run, held = trained
    tok = load_tokenizer(base)
    ref = load_model(base).eval()
    policy = load_model(str(run)).eval()
    margins, rc, rr = [], [], []
    for _, p, c, r in held:
        dc = _plain_logp(policy, tok, p["text"], c["text"]) - _plain_logp(ref, tok, p["text"], c["text"])
        dr = _plain_logp(policy, tok, p["text"], r["text"]) - _plain_logp(ref, tok, p["text"], r["text"])
        margins.append(dc - dr)
        rc.append(BETA * dc)
        rr.append(BETA * dr)
    want = {
        "loss": sum(math.log1p(math.exp(-BETA * m)) for m in margins) / len(margins),
        "reward_margin_beta": sum(BETA * m for m in margins) / len(margins),
        "reward_margin_no_beta": sum(margins) / len(margins),
        "reward_accuracy": sum(m > 0 for m in margins) / len(margins),
        "reward_chosen_beta": sum(rc) / len(rc),
        "reward_rejected_beta": sum(rr) / len(rr),
    }
    report = evaluate(store, "held", [str(run)], base, beta=BETA, batch_size=2, max_length=64, device="cpu")
    final = report.results[-1]
    assert final["n_pairs"] == len(held)
    for key, value in want.items():
        assert final[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
    assert final["reward_margin_beta"] == pytest.approx(BETA * final["reward_margin_no_beta"])
    # The curve: checkpoint-2, then the final model (step 3).
    assert [r["step"] for r in report.results] == [2, 3]


def test_reference_against_itself_is_ln2(trained, tmp_path, monkeypatch):
    import tempfile

    store, base, _, held = trained
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    report = evaluate(store, "held", [base], base, beta=BETA, max_length=64, device="cpu")
    assert list(scratch.iterdir()) == []  # the trainer's scratch dir was private and is gone
    r = report.results[0]
    assert r["loss"] == pytest.approx(math.log(2))
    assert r["reward_margin_no_beta"] == pytest.approx(0.0, abs=1e-6) and r["reward_accuracy"] == 0.0


def test_preference_metrics_plain():
    pc, pr, rc, rr = [-1.0, -5.0, -2.0], [-3.0, -1.0, -2.0], [-2.0, -2.0, -2.0], [-2.0, -2.0, -2.0]
    m = preference_metrics(pc, pr, rc, rr, beta=0.5)
    margins = [2.0, -4.0, 0.0]
    assert m["reward_margin_no_beta"] == pytest.approx(sum(margins) / 3)
    assert m["reward_margin_beta"] == pytest.approx(0.5 * sum(margins) / 3)
    assert m["reward_accuracy"] == pytest.approx(1 / 3)  # the tie is not a win
    assert m["loss"] == pytest.approx(sum(-math.log(1 / (1 + math.exp(-0.5 * x))) for x in margins) / 3)


def test_expand_checkpoints(tmp_path):
    run = tmp_path / "run"
    for step in (10, 2):
        (run / f"checkpoint-{step}").mkdir(parents=True)
    assert expand_checkpoints([str(run)]) == [(str(run / "checkpoint-2"), 2), (str(run / "checkpoint-10"), 10)]
    (run / "config.json").write_text("{}")  # a final model beside the checkpoints, step unknown
    assert expand_checkpoints([str(run)])[-1] == (str(run), None)


# ---- stability ----------------------------------------------------------------------------------


def _plain_embedding(path: str, text: str) -> np.ndarray:
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    net = AutoModel.from_pretrained(path, dtype=torch.float32).eval()
    ids = tok(text)["input_ids"]
    with torch.no_grad():
        h = net(input_ids=torch.tensor([ids])).last_hidden_state[0].double()
    v = h.mean(dim=0).numpy()
    return v / np.linalg.norm(v)


def test_stability_cosines_match_plain_embeddings(trained, tmp_path):
    store, base, run, held = trained
    models = [base, str(run)]
    report = stability(store, "held", models, device="cpu", plot=tmp_path / "s.png")
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    for entry, path in zip(report.checkpoints, models):
        cos = [float(_plain_embedding(path, c["text"]) @ _plain_embedding(path, r["text"])) for _, _, c, r in held]
        assert entry["n"] == len(held) and entry["n_blank"] == 0
        assert entry["mean"] == pytest.approx(np.mean(cos), abs=1e-5)
        assert entry["std"] == pytest.approx(np.std(cos), abs=1e-5)
    assert report.checkpoints[0]["mean_abs_shift"] == 0.0
    assert report.max_mean_abs_shift == report.checkpoints[1]["mean_abs_shift"] > 0


def test_summarise_plain_and_blank_pairs():
    first = np.array([0.5, 0.2, np.nan, 0.9])
    later = np.array([0.4, 0.3, 0.1, 0.9])
    s = summarise({"a": first, "b": later})
    a, b = s["checkpoints"]
    assert a["n"] == 3 and a["n_blank"] == 1 and b["n"] == 4
    ok = [0, 1, 3]
    assert b["mean_shift"] == pytest.approx(np.mean(later[ok] - first[ok]))
    assert b["mean_abs_shift"] == pytest.approx(np.mean(np.abs(later[ok] - first[ok])))
    assert b["max_abs_shift"] == pytest.approx(0.1)
    assert b["pearson_vs_first"] == pytest.approx(np.corrcoef(first[ok], later[ok])[0, 1])
    assert s["max_mean_abs_shift"] == b["mean_abs_shift"]


# ---- what eval tells the user: dropped pairs, progress, held-out check, the curve --------------------


def _trl_prompt_len(tok, prompt: str, chosen: str, rejected: str) -> int:
    """TRL's prompt length (plain text): where prompt and prompt+completion+EOS tokenisations diverge."""

    def common(a, b):
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        return n

    p = tok(prompt)["input_ids"]
    return min(common(p, tok(prompt + chosen + tok.eos_token)["input_ids"]),
               common(p, tok(prompt + rejected + tok.eos_token)["input_ids"]))


def test_pairs_trl_drops_are_counted_with_the_reason(trained):
    store, base, _, held = trained
    tok = load_tokenizer(base)
    lengths = [_trl_prompt_len(tok, p["text"], c["text"], r["text"]) for _, p, c, r in held]
    max_length = max(lengths)  # the longest prompts fill it
    dropped = sum(n >= max_length for n in lengths)
    assert 0 < dropped < len(held)
    report = evaluate(store, "held", [base], base, max_length=max_length, device="cpu")
    assert report.n_pairs_dropped == dropped
    assert report.results[0]["n_pairs"] == len(held) - dropped
    assert "--max-length" in report.dropped_reason and f"{dropped} pair" in report.summary()
    assert evaluate(store, "held", [base], base, max_length=64, device="cpu").n_pairs_dropped == 0


def test_progress_counts_batches_within_each_checkpoint(trained):
    store, base, run, held = trained
    calls = []
    evaluate(store, "held", [str(run)], base, batch_size=2, max_length=64, device="cpu",
             progress=lambda done, total, note: calls.append((done, total, note)))
    batches = math.ceil(len(held) / 2)
    total = batches * 3  # the reference, checkpoint-2, checkpoint-3 (the final model)
    assert calls[0] == (0, total, "reference")
    assert [c[0] for c in calls] == list(range(total + 1))
    assert {c[1] for c in calls} == {total}
    notes = [c[2] for c in calls[1:]]
    assert notes == ["reference"] * batches + ["model 1/2: checkpoint-2"] * batches + ["model 2/2: checkpoint-3"] * batches


def test_an_eval_subset_that_shares_pairs_with_training_is_refused(trained):
    from pairsift.errors import UsageError

    store, base, run, _ = trained
    # The corpus as build_corpus made it: prompts in index order ("prompt 7: ..."), responses.
    prompts = sorted(store.dataset("prompts").to_table().to_pylist(), key=lambda p: int(p["text"].split(":")[0][7:]))
    corpus = {"prompts": prompts, "responses": store.dataset("responses").to_table().to_pylist()}
    # The training subset "sub" holds prompts 1, 2, 4, 6, 7, 10, 11: prompts 0 and 2 share one pair with it.
    save_subset(store, "mixed", corpus, prompt_idx=[0, 2])
    with pytest.raises(UsageError, match="not held out: 1 pair of its 2 are in 'sub'"):
        evaluate(store, "mixed", [str(run)], base, max_length=64, device="cpu")
    report = evaluate(store, "mixed", [str(run / "checkpoint-2")], base, max_length=64, device="cpu",
                      allow_overlap=True)
    assert report.overlap == [{"model": str(run / "checkpoint-2"), "trained_on": "sub", "pairs": 1, "prompts": 1}]
    assert any(n.startswith("OVERLAP: 1 pair") for n in report.notes)
    held_report = evaluate(store, "held", [str(run)], base, max_length=64, device="cpu")
    assert held_report.overlap[0]["pairs"] == 0 and held_report.notes == []


def test_eval_plots_its_curve(trained, tmp_path):
    store, base, run, _ = trained
    out = tmp_path / "curve.png"
    report = evaluate(store, "held", [str(run)], base, max_length=64, device="cpu", plot=out)
    assert report.plot == str(out) and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "curve plotted to" in report.summary()
