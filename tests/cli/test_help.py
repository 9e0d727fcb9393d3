"""One grammar: examples in every help, defaults rendered from configs/registry, one --device."""

from __future__ import annotations

import dataclasses
import shlex

import click
import pytest
from click.testing import CliRunner

from pairsift.cli import cli
from pairsift.cli.options import config_option, field_default
from pairsift.compute.config import ComputeConfig
from pairsift.train.config import EvalConfig, StabilityConfig, TrainConfig


def all_commands(group: click.Group = cli, path: tuple[str, ...] = ()):
    """(path, command) for every command and sub-command, groups included."""
    for name, cmd in sorted(group.commands.items()):
        yield (*path, name), cmd
        if isinstance(cmd, click.Group):
            yield from all_commands(cmd, (*path, name))


COMMANDS = list(all_commands())


def help_text(path: tuple[str, ...]) -> str:
    res = CliRunner().invoke(cli, [*path, "--help"])
    assert res.exit_code == 0, res.output
    return res.output


def examples(text: str) -> list[str]:
    """The `pairsift ...` lines of the help's Example: block."""
    block = text.split("Example:", 1)[1].split("Options:", 1)[0]
    return [line.strip() for line in block.splitlines() if line.strip().startswith("pairsift ")]


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=" ".join)
def test_every_help_has_examples_that_parse(path):
    text = help_text(path)
    assert "Example:" in text, f"`pairsift {' '.join(path)} --help` has no Example: block"
    lines = examples(text)
    assert lines, f"`pairsift {' '.join(path)}`: the Example: block shows no `pairsift ...` line"
    for line in lines:
        words = shlex.split(line)[1:]
        assert tuple(words[: len(path)]) == path, f"example {line!r} is not for `pairsift {' '.join(path)}`"
        cmd: click.Command = cli
        ctx = None
        for word in words[: len(path)]:
            ctx = click.Context(cmd, info_name=word, parent=ctx)
            cmd = cmd.commands[word]
        if isinstance(cmd, click.Group):
            continue  # a group's examples name its sub-commands, parsed with them
        try:
            cmd.make_context(path[-1], words[len(path):], parent=ctx)
        except click.BadParameter as e:  # example paths are placeholders, not files on this machine
            assert "does not exist" in str(e), f"example {line!r}: {e}"
        except click.UsageError as e:
            pytest.fail(f"example {line!r} does not parse: {e}")


# ---- defaults written once -------------------------------------------------------------------------


def _help_of(path: tuple[str, ...], option: str) -> str:
    cmd: click.Command = cli
    for word in path:
        cmd = cmd.commands[word]
    param = next(p for p in cmd.params if option in getattr(p, "opts", []))
    record = param.get_help_record(click.Context(cmd))
    assert record is not None, option
    return " ".join(record[1].split())


def _shown(value) -> str:
    return "on" if value is True else "off" if value is False else str(value)


@pytest.mark.parametrize(
    "path,config",
    [(("train",), TrainConfig), (("eval",), EvalConfig), (("stability",), StabilityConfig),
     (("embed",), ComputeConfig), (("score", "logprobs"), ComputeConfig), (("score", "reward"), ComputeConfig)],
)
def test_help_shows_the_config_dataclass_defaults(path, config):
    cmd: click.Command = cli
    for word in path:
        cmd = cmd.commands[word]
    by_field = {p.name: p for p in cmd.params}
    checked = 0
    for f in dataclasses.fields(config):
        param = by_field.get(f.name)
        if param is None:
            continue
        text = _help_of(path, param.opts[0])
        assert f.metadata.get("help", "").split(" (default")[0].rstrip(".") in text, (f.name, text)
        default = field_default(config, f.name)
        if default not in (None, "", {}, [], False):
            assert f"[default: {_shown(default)}]" in text, (path, f.name, text)
            checked += 1
    assert checked >= 1


def test_config_option_renders_any_dataclass_field():
    @dataclasses.dataclass
    class Knobs:
        rate: float = dataclasses.field(default=0.25, metadata={"help": "How fast."})
        name: str | None = dataclasses.field(default=None, metadata={"help": "Who."})
        loud: bool = dataclasses.field(default=False, metadata={"help": "Shout."})
        depth: int = dataclasses.field(default=3, metadata={"help": "How deep."})

    @click.command()
    @config_option(Knobs, "rate")
    @config_option(Knobs, "name", "--who")
    @config_option(Knobs, "loud")
    @config_option(Knobs, "depth", from_recipe=True)
    def cmd(rate, name, loud, depth):
        click.echo(f"{rate!r} {name!r} {loud!r} {depth!r}")

    res = CliRunner().invoke(cmd, ["--help"])
    text = " ".join(res.output.split())
    assert "--rate FLOAT How fast. [default: 0.25]" in text
    assert "--who TEXT Who." in text and "--loud Shout." in text
    assert "--depth INTEGER How deep. [default: 3]" in text
    # from_recipe: the help shows the dataclass default, the value stays None for a recipe to fill
    assert CliRunner().invoke(cmd, []).output.strip() == "0.25 None False None"
    res = CliRunner().invoke(cmd, ["--rate", "2", "--who", "x", "--loud", "--depth", "5"])
    assert res.output.strip() == "2.0 'x' True 5"


def test_select_help_shows_each_strategys_default_from_the_registry():
    from pairsift.select.strategies import STRATEGIES

    checked = 0
    for option in ("--ratio", "--weight", "--variant", "--logprobs"):
        text = _help_of(("select",), option)
        key = option.lstrip("-")
        for name, cls in STRATEGIES.items():
            value = cls.defaults.get(key)
            if value not in (None, False):
                assert name in text and str(value) in text, (option, name, text)
                checked += 1
    assert checked >= 4


def test_select_choices_match_the_registry():
    from pairsift.features.dcrm import ABLATIONS
    from pairsift.select.strategies.map import VARIANTS

    params = {p.name: p for p in cli.commands["select"].params}
    assert list(params["variant"].type.choices) == list(VARIANTS)
    assert list(params["ablation"].type.choices) == [a for a in ABLATIONS if a]


# ---- one --device ------------------------------------------------------------------------------------

MODEL_COMMANDS = [("embed",), ("score", "logprobs"), ("score", "reward"), ("train",), ("eval",), ("stability",)]


@pytest.mark.parametrize("path", MODEL_COMMANDS, ids=" ".join)
def test_device_means_the_same_everywhere(path):
    text = _help_of(path, "--device")
    assert "auto, cpu, cuda or cuda:N" in text
    cmd: click.Command = cli
    for word in path:
        cmd = cmd.commands[word]
    param = next(p for p in cmd.params if p.name == "device")
    ctx = click.Context(cmd)
    assert param.process_value(ctx, "CUDA:1") == "cuda:1"
    assert param.process_value(ctx, "cpu") == "cpu"
    with pytest.raises(click.BadParameter, match="expected auto, cpu, cuda or cuda:N"):
        param.process_value(ctx, "gpu0")


def test_set_name_is_name_for_embed_and_score():
    for path in (("embed",), ("score", "logprobs"), ("score", "reward")):
        assert "The set this writes" in _help_of(path, "--name")
