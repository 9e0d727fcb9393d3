"""Real TRL runs with the options people who live in TRL expect: trackers, logging, LoRA, the model card."""

from __future__ import annotations

import json
import math

import pytest
import torch

from pairsift.train.config import TrainConfig
from pairsift.train.evaluate import evaluate
from pairsift.train.run import MANIFEST, build_trainer, load_tokenizer, train

from ..conftest import STORIES, shared_file
from .helpers import build_corpus, save_subset, save_tiny, tiny_model, tiny_tokenizer


@pytest.fixture
def store(tmp_store):
    corpus = build_corpus(tmp_store, n_prompts=12, k=2)
    save_subset(tmp_store, "sub", corpus, prompt_idx=[1, 2, 4, 6, 7, 9, 10, 11])  # held out: 0, 3, 5, 8
    save_subset(tmp_store, "held", corpus, prompt_idx=[0, 3, 5, 8], flip={3})
    return tmp_store


def _config(tmp_path, **kw):
    base = dict(subset="sub", model="tiny", max_steps=2, batch_size=4, output=str(tmp_path / "run"), device="cpu",
                learning_rate=1e-3, max_length=64)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.slow
def test_tensorboard_writes_event_files_with_the_loss(store, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tok = tiny_tokenizer()
    train(store, _config(tmp_path, report_to="tensorboard", logging_steps=1), model=tiny_model(tok), tokenizer=tok)
    events = list((tmp_path / "run" / "runs").rglob("events.out.tfevents.*"))
    assert events, "no tensorboard event file under OUTPUT/runs"
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    assert "train/loss" in acc.Tags()["scalars"]
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2]


def test_a_short_run_logs_its_final_loss(store, tmp_path):
    """3 steps with the default --logging-steps 10: the last step is logged all the same."""
    tok = tiny_tokenizer()
    config = _config(tmp_path, max_steps=3)
    assert config.logging_steps == 10
    report = train(store, config, model=tiny_model(tok), tokenizer=tok)
    logged = [h["step"] for h in report.log_history if "loss" in h]
    assert logged == [3]
    assert "last logged loss" in report.summary()


@pytest.mark.slow
def test_lora_trains_adapters_against_the_base_with_adapters_disabled(store, tmp_path, monkeypatch):
    """--use-peft: no second model is loaded (TRL's reference = adapters off); step 1 is ln 2; only
    the adapters move; the run folder holds adapters that eval loads like any checkpoint."""
    import pairsift.train.run as run_mod

    base = save_tiny(tmp_path / "base")
    loads = []
    real_load = run_mod.load_model
    monkeypatch.setattr(run_mod, "load_model", lambda path, **kw: loads.append(path) or real_load(path, **kw))
    config = _config(tmp_path, model=base, use_peft=True, lora_r=4, lora_alpha=8, lora_dropout=0.0, logging_steps=1)
    trainer, _ = build_trainer(store, config)
    assert loads == [base] and trainer.ref_model is None
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    after = dict(trainer.model.named_parameters())
    moved = {n for n in before if not torch.equal(before[n], after[n].detach())}
    assert moved and all("lora_" in n for n in moved)
    assert trainer.state.log_history[0]["loss"] == pytest.approx(math.log(2), rel=1e-5)
    monkeypatch.setattr(run_mod, "load_model", real_load)

    report = train(store, config)
    out = tmp_path / "run"
    assert (out / "adapter_config.json").exists() and (out / "adapter_model.safetensors").exists()
    assert not (out / "model.safetensors").exists()
    card = (out / "README.md").read_text()
    assert "LoRA" in card and "adapters disabled" in card and "r 4, alpha 8" in card
    assert report.config["use_peft"] is True
    result = evaluate(store, "held", [str(out)], base, device="cpu", max_length=64)
    assert result.results[-1]["n_pairs"] == 4 and math.isfinite(result.results[-1]["loss"])
    assert result.results[-1]["reward_margin_no_beta"] != 0  # the adapters were loaded, not the bare base
    from pairsift.train.stability import stability

    moved = stability(store, "held", [base, str(out)], device="cpu")
    assert moved.checkpoints[1]["mean_abs_shift"] > 0


def test_rpo_with_lora_uses_the_adapter_free_reference(store, tmp_path):
    tok = tiny_tokenizer()
    config = _config(tmp_path, loss="rpo", use_peft=True, lora_r=4, logging_steps=1, max_steps=1)
    report = train(store, config, model=tiny_model(tok), tokenizer=tok)
    assert report.log_history[0]["loss"] == pytest.approx(math.log(2), rel=1e-5)


def test_model_card_names_base_loss_subset_and_versions(store, tmp_path):
    from pairsift.train.card import model_card

    base = save_tiny(tmp_path / "base")
    train(store, _config(tmp_path, model=base, loss="sigmoid", max_steps=2, save_steps=1))
    out = tmp_path / "run"
    card = (out / "README.md").read_text()
    manifest = json.loads((out / MANIFEST).read_text())
    assert "[None]" not in card and "relative preference" not in card
    assert "DPO (direct preference optimisation" in card and f"`{base}`" in card
    assert "subset: `sub` (8 preference pairs)" in card and "selection strategy: `test`" in card
    for table, version in manifest["store"]["versions"].items():
        assert f"`{table}` v{version}" in card
    assert "- selection seed: 0" in card
    # The same run as RPO: the card is a function of the manifest, so no second training.
    rpo = model_card({**manifest, "config": {**manifest["config"], "loss": "rpo"}})
    assert "relative preference optimisation" in rpo and "trained with DPO" not in rpo


# ---- real weights: stories260K (small, default run) and SmolLM2 (slow) -----------------------------


@pytest.mark.slow
@pytest.mark.shared
@pytest.mark.parametrize("loss", ["sigmoid", "rpo-diagonal"])
def test_stories260k_lora(store, tmp_path, loss):
    path = str(shared_file(STORIES))
    config = _config(tmp_path, model=path, loss=loss, use_peft=True, lora_r=4, learning_rate=1e-3, logging_steps=1,
                     max_length=128)
    trainer, _ = build_trainer(store, config)
    assert trainer.ref_model is None
    targets = {n.split(".")[-4] for n, p in trainer.model.named_parameters() if "lora_A" in n}
    assert targets == {"q_proj", "v_proj"}  # peft's default for Llama
    trainer.train()
    assert trainer.state.log_history[0]["loss"] == pytest.approx(math.log(2), rel=1e-5)


@pytest.mark.slow
@pytest.mark.shared
@pytest.mark.llm
def test_smollm2_lora_trains_and_evaluates(store, tmp_path, smollm2):
    config = _config(tmp_path, model=str(smollm2), use_peft=True, lora_r=8, lora_target_modules="all-linear",
                     learning_rate=1e-3, logging_steps=1, max_steps=2, max_length=128, batch_size=2)
    report = train(store, config, tokenizer=load_tokenizer(str(smollm2)))
    assert report.log_history[0]["loss"] == pytest.approx(math.log(2), rel=1e-4)
    out = tmp_path / "run"
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 8
    result = evaluate(store, "held", [str(out)], str(smollm2), device="cpu", max_length=128)
    assert result.results[-1]["n_pairs"] == 4


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["sigmoid", "rpo"])
def test_dataloader_workers_from_a_recipe_train_with_spawned_workers(store, tmp_path, loss):
    """The fix BENCHMARKS.md recommends: TRL's stream (and RPO's collator) go to a spawned worker
    (Lance is not fork-safe); step 1 is ln 2 as without workers."""
    base = save_tiny(tmp_path / "base")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"loss: {loss}\nmax_steps: 2\nbatch_size: 4\ndevice: cpu\nmax_length: 64\nlogging_steps: 1\n"
                      "dpo:\n  dataloader_num_workers: 1\n")
    config = TrainConfig.from_yaml(recipe, subset="sub", model=base, output=str(tmp_path / "run"))
    report = train(store, config)
    assert report.max_steps == 2 and report.config["dpo"] == {"dataloader_num_workers": 1}
    assert report.log_history[0]["loss"] == pytest.approx(math.log(2), rel=1e-5)
