"""`pairsift embed` and `pairsift score`: the model-backed columns of the store."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from ..compute.config import REWARD_MAX_LENGTH, TRL_MAX_LENGTH, ComputeConfig
from .executor import Executor, executor_options
from .options import (
    F,
    LazyHelpOption,
    Progress,
    config_option,
    deprecated_option,
    device_option,
    echo_report,
    json_option,
    store_option,
)

if TYPE_CHECKING:
    from ..store import Store


def _batch_tokens_help() -> str:
    from ..compute.engine import CPU_BATCH_TOKENS, GPU_BATCH_TOKENS

    return (f"Token budget per batch, rows x padded length "
            f"(default: {GPU_BATCH_TOKENS:,} on GPU, {CPU_BATCH_TOKENS:,} on CPU).")


def compute_options(f: F) -> F:
    """--device, --dtype, --batch-tokens, --chunk-rows, --json: shared by embed and score."""
    options = [
        device_option(ComputeConfig),
        config_option(ComputeConfig, "dtype"),
        config_option(ComputeConfig, "batch_tokens", cls=LazyHelpOption, help=_batch_tokens_help),
        config_option(ComputeConfig, "chunk_rows"),
        json_option("the run report"),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def run_job(fn: Callable[..., Any], desc: str, as_json: bool, **kwargs: Any) -> None:
    """Run one compute job with a progress line, then print its report."""
    with Progress(desc, unit="tokens") as bar:  # the jobs report tokens (rows as the note)
        report = fn(progress=bar, **kwargs)
    echo_report(report, as_json)


def _chat_flag(value: str) -> bool | None:
    return {"auto": None, "on": True, "off": False}[value]


def _set_name(name: str | None, old: str | None) -> str | None:
    if name is not None and old is not None and name != old:
        raise click.UsageError(f"--name {name} and --as {old} disagree: pass --name only")
    return name if name is not None else old


chat_template_option = click.option(
    "--chat-template", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
    help="Use the tokenizer's chat template over prompt/response messages (auto: when every prompt has messages).",
)


@click.command()
@store_option
@click.option("--model", default=None,
              help="HF model id or local dir. Default for --target prompts: sentence-transformers/all-MiniLM-L6-v2.")
@click.option("--target", type=click.Choice(["responses", "prompts"]), default="responses", show_default=True,
              help="Embed response texts (alone, for REAL) or prompt texts (for RPO).")
@click.option("--name", default=None,
              help="The set this writes: table embeddings_NAME (default: from the model; prompts: prompt_<model>).")
@click.option("--max-length", type=int, default=None,
              help="Max tokens per text; longer texts keep their start and are flagged (default: the model's own; "
                   "above the model's context is refused).")
@click.option("--pooling", type=click.Choice(["mean", "cls", "last"]), default=None,
              help="Default: the model's sentence-transformers pooling, else mean.")
@click.option("--append-eos", is_flag=True, help="Append the EOS token to every text (REAL does it for SHP).")
@compute_options
@executor_options
def embed(store: Store, model: str | None, target: str, name: str | None, max_length: int | None,
          pooling: str | None, append_eos: bool, device: str, dtype: str | None, batch_tokens: int | None,
          chunk_rows: int, as_json: bool, executor: Executor) -> None:
    """Embed responses (or prompts) into embeddings_NAME; resumable, provenance recorded.

    A re-run finishes what a killed run left; with nothing left to do it checks the model files
    against the set's provenance and exits without loading the model.

    Example:

    \b
      pairsift embed --model sentence-transformers/all-MiniLM-L6-v2 --name minilm
      pairsift embed --target prompts --device cpu
    """
    executor.run(run_job, "embed", "embed", as_json, store=store, model=model, target=target, name=name,
            device=device, dtype=dtype, max_length=max_length, batch_tokens=batch_tokens, pooling=pooling,
            append_eos=append_eos, chunk_rows=chunk_rows)


@click.group()
def score() -> None:
    """Per-response log-probs (teacher forcing, as TRL computes them) and reward-model scores.

    Example:

    \b
      pairsift score logprobs --model PATH --name ref
      pairsift score reward --model RM_PATH --name rm
    """


@score.command("logprobs")
@store_option
@click.option("--model", required=True, help="Causal LM: HF model id or local dir.")
@click.option("--name", default=None,
              help="The set this writes: table logprobs_NAME, e.g. ref or policy (default: from the model).")
@deprecated_option("--as", "--name", "old_name")
@click.option("--max-length", type=int, default=None,
              help="Truncate prompt+response to this many tokens, keep start (as DPOConfig.max_length). "
                   f"Default: the model's context, at most {TRL_MAX_LENGTH} (TRL's default); above the context "
                   "is refused.")
@chat_template_option
@compute_options
@executor_options
def score_logprobs(store: Store, model: str, name: str | None, old_name: str | None, max_length: int | None,
                   chat_template: str, device: str, dtype: str | None, batch_tokens: int | None, chunk_rows: int,
                   as_json: bool, executor: Executor) -> None:
    """Sum and mean log-prob of each response given its prompt, with its token ids.

    Example:

    \b
      pairsift score logprobs --model PATH --name ref
      pairsift score logprobs --model runs/easy --name policy --max-length 512
    """
    executor.run(run_job, "logprobs", "logprobs", as_json, store=store, model=model,
            name=_set_name(name, old_name), device=device, dtype=dtype, max_length=max_length,
            batch_tokens=batch_tokens, chat_template=_chat_flag(chat_template), chunk_rows=chunk_rows)


@score.command("reward")
@store_option
@click.option("--model", required=True, help="Sequence-classification reward model: HF id or local dir.")
@click.option("--name", default=None, help="The set this writes: table rewards_NAME (default: from the model).")
@deprecated_option("--as", "--name", "old_name")
@click.option("--max-length", type=int, default=None,
              help=f"Max tokens of prompt+response (default: the model's context, at most {REWARD_MAX_LENGTH}); "
                   "above the context is refused.")
@click.option("--label", type=int, default=0, show_default=True, help="Which output logit is the reward.")
@chat_template_option
@compute_options
@executor_options
def score_reward(store: Store, model: str, name: str | None, old_name: str | None, max_length: int | None,
                 label: int, chat_template: str, device: str, dtype: str | None, batch_tokens: int | None,
                 chunk_rows: int, as_json: bool, executor: Executor) -> None:
    """A reward model's score of each (prompt, response).

    Example:

    \b
      pairsift score reward --model RM_PATH --name rm
    """
    executor.run(run_job, "reward", "reward", as_json, store=store, model=model,
            name=_set_name(name, old_name), device=device, dtype=dtype, max_length=max_length,
            batch_tokens=batch_tokens, chat_template=_chat_flag(chat_template), label=label, chunk_rows=chunk_rows)
