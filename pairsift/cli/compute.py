"""`pairsift embed` and `pairsift score`: the model-backed columns of the store."""

from __future__ import annotations

import click

from .options import compute_options, run_report, store_option


@click.command()
@store_option
@click.option("--model", default=None,
              help="HF model id or local dir. Default for --target prompts: sentence-transformers/all-MiniLM-L6-v2.")
@click.option("--target", type=click.Choice(["responses", "prompts"]), default="responses", show_default=True,
              help="Embed response texts (alone, for REAL) or prompt texts (for RPO).")
@click.option("--name", default=None,
              help="Embedding set name, table embeddings_<name> (default: from the model; prompts: prompt_<model>).")
@click.option("--max-length", type=int, default=None,
              help="Max tokens per text; longer texts keep their start and are flagged (default: model's).")
@click.option("--pooling", type=click.Choice(["mean", "cls", "last"]), default=None,
              help="Default: the model's sentence-transformers pooling, else mean.")
@click.option("--append-eos", is_flag=True, help="Append the EOS token to every text (REAL does it for SHP).")
@compute_options
def embed(store, model, target, name, max_length, pooling, append_eos, device, dtype, batch_tokens, chunk_rows,
          as_json):
    """Embed responses (or prompts) into embeddings_<name>; resumable, provenance recorded."""
    from ..compute.embed import embed as run

    run_report(run, "embed", as_json, store=store, model=model, target=target, name=name, device=device,
                dtype=dtype, max_length=max_length, batch_tokens=batch_tokens, pooling=pooling,
                append_eos=append_eos, chunk_rows=chunk_rows)


@click.group()
def score():
    """Per-response log-probs (teacher forcing, as TRL computes them) and reward-model scores."""


def _chat_flag(value: str):
    return {"auto": None, "on": True, "off": False}[value]


@score.command("logprobs")
@store_option
@click.option("--model", required=True, help="Causal LM: HF model id or local dir.")
@click.option("--as", "name", required=True, help="Set name, table logprobs_<name> (e.g. ref, policy).")
@click.option("--max-length", type=int, default=1024, show_default=True,
              help="Truncate prompt+response to this many tokens, keep start (as DPOConfig.max_length).")
@click.option("--chat-template", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="Use the tokenizer's chat template over prompt/response messages.")
@compute_options
def score_logprobs(store, model, name, max_length, chat_template, device, dtype, batch_tokens, chunk_rows, as_json):
    """Sum and mean log-prob of each response given its prompt, with its token ids."""
    from ..compute.score import score_logprobs as run

    run_report(run, "logprobs", as_json, store=store, model=model, name=name, device=device, dtype=dtype,
                max_length=max_length, batch_tokens=batch_tokens, chat_template=_chat_flag(chat_template),
                chunk_rows=chunk_rows)


@score.command("reward")
@store_option
@click.option("--model", required=True, help="Sequence-classification reward model: HF id or local dir.")
@click.option("--as", "name", default=None, help="Set name, table rewards_<name> (default: from the model).")
@click.option("--max-length", type=int, default=None, help="Max tokens of prompt+response (default: model's).")
@click.option("--label", type=int, default=0, show_default=True, help="Which output logit is the reward.")
@click.option("--chat-template", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="Use the tokenizer's chat template over prompt/response messages.")
@compute_options
def score_reward(store, model, name, max_length, label, chat_template, device, dtype, batch_tokens, chunk_rows,
                 as_json):
    """A reward model's score of each (prompt, response)."""
    from ..compute.score import score_rewards as run

    run_report(run, "reward", as_json, store=store, model=model, name=name, device=device, dtype=dtype,
                max_length=max_length, batch_tokens=batch_tokens, chat_template=_chat_flag(chat_template),
                label=label, chunk_rows=chunk_rows)
