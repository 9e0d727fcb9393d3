"""Training through TRL from the stream: step-1 losses, parameter updates, manifest, recipes, CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch

from pairsift.errors import UsageError
from pairsift.train.config import LOSSES, TrainConfig, shipped_recipes
from pairsift.train.run import MANIFEST, train

from ..conftest import STORIES, shared_file
from .helpers import build_corpus, save_subset, save_tiny, tiny_model, tiny_tokenizer

BETA = 0.1
#: The loss at theta = ref (every log-ratio 0). TRL's IPO is (delta - 1/(2 beta))^2 with delta the
#: length-normalised log-ratio difference, so (1/(2 beta))^2; hinge is relu(1 - beta*0) = 1.
STEP1 = {
    "sigmoid": math.log(2),
    "ipo": (1 / (2 * BETA)) ** 2,
    "hinge": 1.0,
    "rpo": math.log(2),
    "rpo-unpaired": math.log(2),
    "rpo-diagonal": math.log(2),
}


@pytest.fixture
def subset_store(tmp_store):
    corpus = build_corpus(tmp_store, n_prompts=12, k=2)
    save_subset(tmp_store, "sub", corpus)
    save_subset(tmp_store, "held", corpus, prompt_idx=[0, 3, 5, 8], flip={3})
    save_subset(tmp_store, "raw", corpus, prompt_idx=[1, 2], labelled=False)
    return tmp_store


def _config(tmp_path, loss, **kw):
    base = dict(subset="sub", model="tiny", loss=loss, beta=BETA, max_steps=1, batch_size=4, logging_steps=1,
                output=str(tmp_path / f"run-{loss}"), device="cpu", learning_rate=1e-3, max_length=64)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("loss", LOSSES)
def test_step1_loss_and_every_parameter_moves(subset_store, tmp_path, loss):
    tok = tiny_tokenizer()
    model = tiny_model(tok)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    manifest = train(subset_store, _config(tmp_path, loss), model=model, tokenizer=tok)
    step1 = manifest.log_history[0]
    assert step1["step"] == 1
    assert step1["loss"] == pytest.approx(STEP1[loss], rel=1e-5)
    assert step1["rewards/margins"] == pytest.approx(0.0, abs=1e-6)  # theta = ref at step 1
    after = dict(model.named_parameters())
    unchanged = [n for n, p in before.items() if torch.equal(p, after[n].detach())]
    assert not unchanged, f"parameters not updated by one {loss} step: {unchanged}"


def test_manifest_ties_the_model_to_subset_and_versions(subset_store, tmp_path):
    base = save_tiny(tmp_path / "base")
    config = _config(tmp_path, "sigmoid", model=base, max_steps=None, epochs=2, save_steps=3)
    manifest = train(subset_store, config)
    out = tmp_path / "run-sigmoid"
    on_disk = json.loads((out / MANIFEST).read_text())
    assert on_disk["subset"]["name"] == "sub"
    assert on_disk["store"]["versions"] == subset_store.versions(["prompts", "responses"])
    assert on_disk["store"]["uri"] == subset_store.uri
    assert on_disk["config"]["loss"] == "sigmoid" and on_disk["config"]["model"] == base
    assert on_disk["n_pairs"] == 12 and on_disk["max_steps"] == 6  # 2 epochs x 12 pairs / batch 4
    assert [c.rsplit("-", 1)[1] for c in on_disk["checkpoints"]] == ["3", "6"]
    assert (out / "config.json").exists() and (out / "tokenizer.json").exists()
    assert manifest.max_steps == on_disk["max_steps"] and manifest.to_dict() == on_disk


def test_unlabelled_subset_is_refused(subset_store, tmp_path):
    with pytest.raises(UsageError, match="pairsift label import"):
        train(subset_store, _config(tmp_path, "sigmoid", subset="raw"), model=tiny_model(tiny_tokenizer()),
              tokenizer=tiny_tokenizer())


@pytest.mark.slow
@pytest.mark.shared
@pytest.mark.parametrize("loss", ["sigmoid", "rpo"])
def test_stories260k_step1_is_ln2(subset_store, tmp_path, loss):
    path = str(shared_file(STORIES))
    config = _config(tmp_path, loss, model=path, learning_rate=1e-4, max_length=128)
    from pairsift.train.run import load_tokenizer

    tok = load_tokenizer(path)
    tok.pad_token_id = 0
    assert tok.pad_token_id == 0
    manifest = train(subset_store, config, tokenizer=tok)  # policy and its reference both load from the path
    assert manifest.log_history[0]["loss"] == pytest.approx(math.log(2), rel=1e-5)


# ---- config and recipes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,flag",
    [
        (dict(loss="dpo"), "--loss"),
        (dict(beta=0), "--beta"),
        (dict(epochs=1, max_steps=3), "--max-steps"),
        (dict(batch_size=0), "--batch-size"),
        (dict(loss="rpo-unpaired", batch_size=1), "--batch-size"),
        (dict(device="cpu", bf16=True), "--bf16"),
        (dict(loss="rpo", prompt_embeddings="Bad-Name"), "--prompt-embeddings"),
        (dict(model=""), "--model"),
        (dict(dpo={"beta": 0.2}), "beta"),
        (dict(tau=0), "--tau"),
    ],
)
def test_bad_config_names_the_flag(kwargs, flag):
    base = dict(subset="s", model="m")
    base.update(kwargs)
    with pytest.raises(UsageError, match=flag):
        TrainConfig(**base).validate()


def test_yaml_recipe_and_cli_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("loss: ipo\nbeta: 0.2\nepochs: 2\nmax-length: 256\n")
    config = TrainConfig.from_yaml(recipe, subset="s", model="m", max_steps=10, beta=None)
    assert (config.loss, config.beta, config.max_steps, config.epochs, config.max_length) == ("ipo", 0.2, 10, None, 256)
    config.validate()
    recipe.write_text("los: ipo\n")
    with pytest.raises(UsageError, match="unknown key 'los'"):
        TrainConfig.from_yaml(recipe)


def test_every_shipped_recipe_loads_and_validates():
    import dataclasses

    from trl import DPOConfig

    recipes = shipped_recipes()
    assert len(recipes) >= 4
    dpo_fields = {f.name for f in dataclasses.fields(DPOConfig)}
    for path in recipes:
        config = TrainConfig.from_yaml(path, subset="s", model="m").validate()
        assert not set(config.dpo) - dpo_fields, f"{path.name}: unknown DPOConfig fields"


# ---- CLI ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_train_eval_stability(subset_store, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from pairsift.cli import cli

    base = save_tiny(tmp_path / "base")
    run = tmp_path / "run"
    runner = CliRunner()
    store = ["--store", subset_store.uri]
    res = runner.invoke(cli, ["train", "sub", *store, "--model", base, "--max-steps", "2", "--batch-size", "4",
                              "--device", "cpu", "--lr", "1e-3", "--max-length", "64", "--save-steps", "1",
                              "--output", str(run), "--json"])
    assert res.exit_code == 0, res.output
    manifest = json.loads(res.stdout)
    assert manifest["subset"]["name"] == "sub" and len(manifest["checkpoints"]) == 2

    res = runner.invoke(cli, ["eval", "held", *store, "--model", str(run), "--ref-model", base,
                              "--device", "cpu", "--max-length", "64", "--json"])
    assert res.exit_code == 1 and "not held out: 4 pairs of its 4 are in 'sub'" in res.output
    assert "--allow-overlap" in res.output
    res = runner.invoke(cli, ["eval", "held", *store, "--model", str(run), "--ref-model", base,
                              "--device", "cpu", "--max-length", "64", "--allow-overlap", "--json"])
    assert res.exit_code == 0, res.output
    assert "OVERLAP: 4 pairs of 'held' were trained on" in res.stderr
    report = json.loads(res.stdout)
    assert [r["step"] for r in report["results"]] == [1, 2]

    plot = tmp_path / "s.png"
    res = runner.invoke(cli, ["stability", "raw", *store, "--models", f"{base},{run}",
                              "--plot", str(plot), "--device", "cpu", "--json"])
    assert res.exit_code == 0, res.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Without --plot nothing is written, in the working directory or anywhere else.
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    res = runner.invoke(cli, ["stability", "raw", *store, "--models", base, "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "plot" not in res.stdout and list(cwd.iterdir()) == []

    res = runner.invoke(cli, ["train", "raw", *store, "--model", base, "--device", "cpu"])
    assert res.exit_code == 1 and "pairsift label import" in res.output
