"""`pairsift train`, `eval` and `stability`: TRL on a subset streamed from the store.

Every option's default and help come from the config dataclasses in :mod:`pairsift.train.config`.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from ..train.config import LOSSES, EvalConfig, StabilityConfig, TrainConfig
from .options import (
    F,
    Progress,
    config_option,
    deprecated_option,
    device_option,
    echo_report,
    json_option,
    positional_or_deprecated,
    store_option,
    warn,
)

if TYPE_CHECKING:
    from ..store import Store


def _train_option(name: str, *decls: str, **kwargs: Any) -> Callable[[F], F]:
    """A `train` option from TrainConfig; None when not given, so a --config recipe can fill it."""
    return config_option(TrainConfig, name, *decls, from_recipe=True, **kwargs)


def _dpo_items(ctx: click.Context, param: click.Parameter, items: tuple[str, ...]) -> dict[str, Any] | None:
    """--dpo KEY=VALUE (repeatable) as a mapping; each value is read as a YAML scalar (1e-5, true, null)."""
    if not items:
        return None
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE (a trl.DPOConfig field), got {item!r}", param_hint="--dpo")
        try:
            out[key.strip().replace("-", "_")] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            out[key.strip().replace("-", "_")] = value
    return out


@click.command()
@click.argument("name")
@store_option
@_train_option("model")
@_train_option("ref_model")
@_train_option("loss", type=click.Choice(LOSSES))
@_train_option("beta")
@_train_option("tau")
@_train_option("diagonal_weight")
@_train_option("learning_rate")
@deprecated_option("--lr", "--learning-rate", "lr_option", type=float)
@_train_option("epochs")
@_train_option("max_steps")
@_train_option("batch_size")
@_train_option("gradient_accumulation_steps")
@deprecated_option("--grad-accum", "--gradient-accumulation-steps", "grad_accum_option", type=int)
@_train_option("max_length")
@_train_option("output")
@_train_option("save_steps")
@_train_option("logging_steps")
@_train_option("report_to", metavar="NAME[,NAME]")
@_train_option("seed")
@_train_option("prompt_embeddings")
@device_option(TrainConfig, from_recipe=True)
@_train_option("bf16", "--bf16/--no-bf16")
@_train_option("gradient_checkpointing", "--gradient-checkpointing/--no-gradient-checkpointing")
@_train_option("use_peft", "--use-peft/--no-peft")
@_train_option("lora_r")
@_train_option("lora_alpha")
@_train_option("lora_dropout")
@_train_option("lora_target_modules", metavar="NAME[,NAME]")
@_train_option("dpo", "--dpo", multiple=True, metavar="KEY=VALUE", type=str, callback=_dpo_items)
@click.option("--config", "recipe", type=click.Path(exists=True, dir_okay=False), default=None,
              help="YAML recipe of these options (same names: learning_rate: ... is --learning-rate); "
                   "command-line options override it.")
@json_option("the run manifest")
def train(store: Store, name: str, recipe: str | None, as_json: bool, lr_option: float | None,
          grad_accum_option: int | None, **options: Any) -> None:
    """Align --model on subset NAME, streamed from the store into TRL (DPO/IPO/SLiC/RPO).

    Saves the model (with --use-peft: LoRA adapters), a model card (README.md) and
    pairsift_manifest.json (subset, store versions, config) to --output.
    Multi-GPU: `accelerate launch -m pairsift.cli train NAME ...`.

    Example:

    \b
      pairsift train hh-easy --model PATH --loss sigmoid --beta 0.1 --epochs 1 --output runs/easy
      pairsift train hh-easy --config recipes/dpo-sigmoid.yaml --model PATH --device cuda:1
      pairsift train hh-easy --model PATH --use-peft --lora-r 8 --report-to tensorboard
      pairsift train hh-easy --model PATH --dpo warmup_steps=0.1 --dpo lr_scheduler_type=cosine
    """
    from ..train.config import TrainConfig as Config
    from ..train.run import train as run

    for old, new, value in (("--lr", "learning_rate", lr_option),
                            ("--grad-accum", "gradient_accumulation_steps", grad_accum_option)):
        if value is not None:
            if options[new] is not None and options[new] != value:
                raise click.UsageError(f"{old} and --{new.replace('_', '-')} given with different values; keep one")
            options[new] = value
    options["subset"] = name
    config = Config.from_yaml(recipe, **options) if recipe else Config().merged(**options)
    with contextlib.redirect_stdout(sys.stderr):  # the trainer prints its logs: keep stdout for results
        report = run(store, config.validate())
    echo_report(report, as_json)


@click.command("eval")
@click.argument("subset", required=False, metavar="SUBSET")
@store_option(create=False)
@click.option("--model", "models", multiple=True, required=True,
              help="Checkpoint dir, or a run dir (all its checkpoint-N). Repeatable or comma-separated.")
@click.option("--ref-model", required=True, help="Reference model the rewards are measured against.")
@deprecated_option("--subset", "the first argument (pairsift eval SUBSET ...)", "subset_option")
@config_option(EvalConfig, "beta")
@config_option(EvalConfig, "batch_size")
@config_option(EvalConfig, "max_length")
@device_option(EvalConfig)
@click.option("--allow-overlap", is_flag=True,
              help="Evaluate even if SUBSET shares pairs with the subset a run was trained on (refused otherwise).")
@click.option("--plot", default=None, type=click.Path(dir_okay=False),
              help="Write the curve (loss, accuracy, margin against the step) as a PNG here.")
@json_option("the metrics")
def eval_(store: Store, subset: str | None, subset_option: str | None, models: tuple[str, ...], ref_model: str,
          beta: float, batch_size: int, max_length: int, device: str, allow_overlap: bool, plot: str | None,
          as_json: bool) -> None:
    """DPO loss, reward margin (with and without beta) and reward accuracy on held-out SUBSET.

    Several checkpoints (or a run directory) give the training curve. SUBSET must not share
    pairs with the subset a run was trained on (its manifest says which) unless --allow-overlap.
    Pairs TRL cannot evaluate (prompt alone >= --max-length) are counted and reported.

    Example:

    \b
      pairsift eval held-out --model runs/easy --ref-model PATH
      pairsift eval held-out --model runs/easy/checkpoint-100,runs/easy --ref-model PATH --json
      pairsift eval held-out --model runs/easy --ref-model PATH --plot curve.png
    """
    from ..train.evaluate import evaluate

    subset = positional_or_deprecated(subset, subset_option, "SUBSET", "--subset")
    paths = [p for m in models for p in m.split(",") if p]
    with Progress("eval", unit="batches") as bar, contextlib.redirect_stdout(sys.stderr):
        report = evaluate(store, subset, paths, ref_model, beta=beta, batch_size=batch_size, max_length=max_length,
                          device=device, allow_overlap=allow_overlap, plot=plot, progress=bar)
    if as_json:  # the summary says these; JSON readers get them on stderr too
        if report.n_pairs_dropped:
            warn(f"{report.n_pairs_dropped} of {report.n_pairs_in_subset} pairs not evaluated: {report.dropped_reason}")
        for note in report.notes:
            warn(note)
    echo_report(report, as_json)


@click.command()
@click.argument("subset", required=False, metavar="SUBSET")
@store_option
@click.option("--models", required=True, help="Comma-separated checkpoints, first = baseline (CKPT1,CKPT2,...).")
@deprecated_option("--subset", "the first argument (pairsift stability SUBSET ...)", "subset_option")
@click.option("--plot", default=None, type=click.Path(dir_okay=False),
              help="Write a PNG of the cosine distributions here (nothing is written without it).")
@config_option(StabilityConfig, "max_length")
@device_option(StabilityConfig)
@config_option(StabilityConfig, "dtype")
@config_option(StabilityConfig, "batch_tokens")
@json_option("the report")
def stability(store: Store, subset: str | None, subset_option: str | None, models: str, plot: str | None,
              max_length: int, device: str, dtype: str | None, batch_tokens: int | None, as_json: bool) -> None:
    """REAL's embedding-stability check: SUBSET's response cosines under each checkpoint.

    Example:

    \b
      pairsift stability hh-easy --models PATH,runs/easy/checkpoint-100 --plot stability.png
    """
    from ..train.stability import stability as run

    subset = positional_or_deprecated(subset, subset_option, "SUBSET", "--subset")
    with Progress("stability", unit="models") as bar:
        report = run(store, subset, [m for m in models.split(",") if m], device=device, dtype=dtype,
                     max_length=max_length, batch_tokens=batch_tokens, plot=plot, progress=bar)
    echo_report(report, as_json)
