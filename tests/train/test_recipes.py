"""Recipes and --dpo: any trl.DPOConfig field, merged or refused by name, never a raw TypeError."""

from __future__ import annotations

import pytest

from pairsift.errors import MissingDependency, UsageError
from pairsift.train.args import dpo_kwargs, make_dpo_config, report_to
from pairsift.train.config import OWNED, SAME_NAME, TrainConfig, dpo_fields, shipped_recipes


def _recipe(tmp_path, text: str, **overrides):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return TrainConfig.from_yaml(path, **{"subset": "s", "model": "m", **overrides})


def _args(config: TrainConfig):
    return make_dpo_config(config.validate(), max_steps=3, use_cpu=True, bf16=False)


def test_dataloader_workers_and_report_to_in_a_recipe_reach_dpoconfig(tmp_path):
    # Both crashed with "DPOConfig() got multiple values for keyword argument".
    config = _recipe(tmp_path, "dpo:\n  dataloader_num_workers: 2\n  report_to: tensorboard\n  warmup_steps: 0.1\n")
    args = _args(config)
    assert args.dataloader_num_workers == 2
    assert args.dataloader_multiprocessing_context == "spawn"  # Lance is not fork-safe
    assert args.report_to == ["tensorboard"] and config.report_to == "tensorboard"
    assert args.warmup_steps == 0.1


def test_every_pairsift_field_reaches_dpoconfig_once():
    """Every keyword pairsift passes is a real DPOConfig field, and none is passed by both sides."""
    config = TrainConfig(subset="s", model="m", dpo={"lr_scheduler_type": "cosine"}).validate()
    kwargs = dpo_kwargs(config, max_steps=5, use_cpu=True, bf16=False)
    fields = set(dpo_fields())
    assert set(kwargs) <= fields
    assert set(SAME_NAME) <= fields and set(OWNED) <= fields
    args = make_dpo_config(config, max_steps=5, use_cpu=True, bf16=False)
    assert (args.max_steps, args.lr_scheduler_type, args.learning_rate) == (5, "cosine", config.learning_rate)


def test_same_name_dpo_fields_merge_into_the_option(tmp_path):
    config = _recipe(tmp_path, "dpo:\n  learning_rate: 3.0e-5\n  logging_steps: 2\n  beta: 0.2\n")
    assert (config.learning_rate, config.logging_steps, config.beta, config.dpo) == (3e-5, 2, 0.2, {})
    args = _args(config)
    assert (args.learning_rate, args.logging_steps, args.beta) == (3e-5, 2, 0.2)
    # The command line still wins over the recipe's dpo: value.
    config = _recipe(tmp_path, "dpo:\n  learning_rate: 3.0e-5\n", learning_rate=1e-4)
    assert config.learning_rate == 1e-4
    # The same value twice in one recipe is fine; two values is an error naming the key.
    assert _recipe(tmp_path, "beta: 0.2\ndpo:\n  beta: 0.2\n").beta == 0.2
    with pytest.raises(UsageError, match="'beta' given twice"):
        _recipe(tmp_path, "beta: 0.1\ndpo:\n  beta: 0.2\n")


@pytest.mark.parametrize("key,option", sorted(OWNED.items()))
def test_owned_fields_are_refused_with_the_option_to_use(tmp_path, key, option):
    config = _recipe(tmp_path, f"dpo:\n  {key}: 1\n")
    with pytest.raises(UsageError, match=f"--{option.replace('_', '-')}"):
        config.validate()


def test_unknown_keys_name_the_closest_fields(tmp_path):
    with pytest.raises(UsageError, match="did you mean warmup_steps"):
        _recipe(tmp_path, "dpo:\n  warmup_step: 10\n").validate()
    with pytest.raises(UsageError, match="did you mean max_length"):
        _recipe(tmp_path, "max_lenght: 10\n")
    # A DPOConfig field at the top level says where it belongs.
    with pytest.raises(UsageError, match="under `dpo:`"):
        _recipe(tmp_path, "warmup_steps: 10\n")


def test_lr_in_a_recipe_is_refused_with_the_right_name(tmp_path):
    with pytest.raises(UsageError, match="'learning_rate'"):
        _recipe(tmp_path, "lr: 1.0e-5\n")
    assert _recipe(tmp_path, "learning_rate: 1.0e-5\n").learning_rate == 1e-5


def test_what_trl_refuses_is_one_usage_error(tmp_path):
    config = _recipe(tmp_path, "dpo:\n  lr_scheduler_type: not-a-scheduler\n")
    with pytest.raises(UsageError, match="trl.DPOConfig refused"):
        _args(config)
    with pytest.raises(UsageError, match="fork"):
        _recipe(tmp_path, "dpo:\n  dataloader_num_workers: 1\n  dataloader_multiprocessing_context: fork\n").validate()


def test_report_to_names_are_checked():
    assert report_to(TrainConfig(subset="s", model="m")) == []
    assert report_to(TrainConfig(subset="s", model="m", report_to="tensorboard")) == ["tensorboard"]
    with pytest.raises(UsageError, match="did you mean tensorboard"):
        report_to(TrainConfig(subset="s", model="m", report_to="tensorbord"))
    with pytest.raises(UsageError, match="cannot be combined"):
        report_to(TrainConfig(subset="s", model="m", report_to="none,tensorboard"))
    from transformers.integrations.integration_utils import get_available_reporting_integrations

    if "wandb" not in get_available_reporting_integrations():
        with pytest.raises(MissingDependency, match="pip install wandb"):
            report_to(TrainConfig(subset="s", model="m", report_to="wandb"))


def test_lora_target_modules_from_a_recipe_list(tmp_path):
    config = _recipe(tmp_path, "use_peft: true\nlora_r: 4\nlora_target_modules: [q_proj, v_proj]\n")
    assert config.use_peft and config.lora_r == 4 and config.target_modules == ["q_proj", "v_proj"]
    assert TrainConfig(lora_target_modules="all-linear").target_modules == "all-linear"


def test_every_shipped_recipe_builds_its_dpoconfig():
    recipes = shipped_recipes()
    assert len(recipes) >= 6
    for path in recipes:
        config = TrainConfig.from_yaml(path, subset="s", model="m")
        _args(config)  # validated, and every dpo: field accepted by TRL


# ---- the command line ----------------------------------------------------------------------------


def test_cli_dpo_values_are_yaml_scalars_and_override_the_recipe(tmp_path, monkeypatch):
    """--dpo KEY=VALUE reaches TrainConfig typed; the CLI's --learning-rate and --lr spell one option."""
    import click
    from click.testing import CliRunner

    from pairsift.cli import cli

    seen = {}

    def fake_run(store, config):  # stop before any model is loaded: this test is about parsing
        seen["config"] = config
        raise click.exceptions.Exit(0)

    monkeypatch.setattr("pairsift.train.run.train", fake_run)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("dpo:\n  warmup_steps: 5\n  lr_scheduler_type: linear\n")
    runner = CliRunner()
    base = ["train", "s", "--store", str(tmp_path / "store"), "--model", "m", "--config", str(recipe)]
    res = runner.invoke(cli, [*base, "--dpo", "lr_scheduler_type=cosine", "--dpo", "max_grad_norm=0.5",
                                          "--dpo", "dataloader_pin_memory=false", "--learning-rate", "2e-5"])
    assert res.exit_code == 0, res.output
    config = seen["config"]
    assert config.dpo == {"warmup_steps": 5, "lr_scheduler_type": "cosine", "max_grad_norm": 0.5,
                          "dataloader_pin_memory": False}
    assert config.learning_rate == 2e-5
    res = runner.invoke(cli, [*base, "--lr", "3e-5"])
    assert res.exit_code == 0 and seen["config"].learning_rate == 3e-5
    assert "--lr is deprecated" in res.stderr and "--learning-rate" in res.stderr
    res = runner.invoke(cli, [*base, "--dpo", "learning_rate=1e-5", "--learning-rate", "2e-5"])
    assert res.exit_code != 0 and "given twice" in res.output
