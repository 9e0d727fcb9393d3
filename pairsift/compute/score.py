"""Per-response log-probabilities (docs/METHODS.md §2 DCRM, §3 M_AP) and rewards.

**Log-probs** are computed by teacher forcing, the way TRL 1.16's DPOTrainer computes them, so
DCRM's ``p_delta``/``e_delta`` and M_AP's implicit margin see what training will see:

- plain text: the completion is ``response + EOS`` (EOS text appended unless already there);
  ``prompt_ids = tok(prompt)``, ``full = tok(prompt + completion)`` (the tokenizer's default
  special tokens), and the completion starts where the two diverge (TRL's common-prefix rule);
- chat (``chat_template`` on, or auto when the prompt and response have messages and the
  tokenizer has a template): ``prompt_ids`` = the template with the generation prompt,
  ``full`` = the template over prompt + response messages; no EOS added (the template's own);
- truncation ``keep_start`` at ``max_length``: by default the model's context, at most TRL's
  default 1024 (a stories260K with a 512-token context gets 512); a value above the model's
  context is refused. A response whose prompt alone fills ``max_length`` is dropped by TRL, so
  here its log-probs are null (counted ``prompt_too_long``).
``logp_sum`` sums the log-probs of the completion tokens kept, ``logp_mean`` divides by their
number ``n_tokens``; ``token_ids`` are the whole completion's ids (EOS included) for edit
distance. One difference from TRL, by construction: TRL takes the completion start as the
*minimum* over a pair's chosen and rejected; scoring responses one by one uses each response's
own. They differ only when a prompt's last token merges with the response's first token
differently for the two responses.

Only the completion positions go through the LM head, in tiles (no ``[B, T, vocab]`` logits),
with log-softmax in fp32 and sums in fp64.

**Rewards**: a sequence-classification model's logit (``label`` index, default 0) for
``prompt + response`` (chat template when auto-detected or asked for), first ``max_length``
tokens kept and flagged ``truncated``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import polars as pl
import pyarrow as pa

from ..errors import UsageError
from ..store.schema import logprobs_schema, rewards_schema
from . import sets
from .config import DEFAULTS, REWARD_MAX_LENGTH, TRL_MAX_LENGTH
from .engine import (
    ChunkWriter,
    Engine,
    JobProgress,
    Ragged,
    arrow_backed,
    background,
    chunked,
    to_arrow,
)
from .models import Loaded, ModelFiles, default_set_name, inspect_model, known_provenance, load, max_length_for
from .report import ComputeReport
from .tokenize import messages as _msgs
from .tokenize import tokenize, trl_tokenize_ragged

if TYPE_CHECKING:
    from ..store import Store


@dataclass
class LogprobsReport(ComputeReport):
    """What `score_logprobs` did: rows of ``logprobs_<name>``, empty/truncated/too-long responses."""

    empty: int = 0
    prompt_too_long: int = 0
    chat_template: bool | None = None
    max_length: int | None = None

    _COUNTS: ClassVar[dict[str, str]] = {"empty": "empty", "truncated": "truncated",
                                         "prompt_too_long": "prompt too long"}


@dataclass
class RewardsReport(ComputeReport):
    """What `score_rewards` did: rows of ``rewards_<name>`` and how many inputs were truncated."""

    chat_template: bool | None = None
    max_length: int | None = None


def _prompts(store: Store) -> pl.DataFrame:
    """All prompts (fewer than responses), joined onto each window of responses."""
    return store.scan("prompts").select(
        "prompt_id", pl.col("text").alias("prompt_text"), pl.col("messages").alias("prompt_messages")
    ).collect()


def _pending(store: Store, table_name: str, window_rows: int) -> sets.Pending:
    return sets.Pending(store, "responses", ["response_id", "prompt_id", "text", "messages"], "response_id",
                        table_name, "response_id", window_rows)


def _joined(todo: sets.Pending, prompts: pl.DataFrame) -> Iterator[pl.DataFrame]:
    for w in todo:
        yield w.join(prompts, on="prompt_id", how="inner")


def _null_count(store: Store, table: str, column: str) -> int:
    return sum(b.column(0).null_count for b in store.dataset(table).to_batches(columns=[column]))


def _use_chat(store: Store, tok: Any, chat_template: bool | None) -> bool:
    return chat_choice(has_messages(store), tok, chat_template)


def has_messages(store: Store) -> bool:
    """Every prompt and response carries chat messages (the chat template can apply)."""
    return _null_count(store, "responses", "messages") == 0 and _null_count(store, "prompts", "messages") == 0


def chat_choice(has_msgs: bool, tok: Any, chat_template: bool | None) -> bool:
    """Whether to score through the chat template (`chat_template` None: auto)."""
    if chat_template is None:
        return bool(has_msgs and getattr(tok, "chat_template", None))
    if chat_template and not getattr(tok, "chat_template", None):
        raise UsageError("--chat-template: the tokenizer has no chat template")
    if chat_template and not has_msgs:
        raise UsageError("--chat-template: some prompts or responses have no chat messages")
    return chat_template


def logprob_forward(net: Any, tile_tokens: int | None = None) -> Callable[[dict], dict]:
    """Engine forward: sum of log p(token | prefix) over the positions :func:`logprob_targets` lists."""
    import torch

    backbone = net.base_model
    head = net.get_output_embeddings()
    cfg = net.config.get_text_config() if hasattr(net.config, "get_text_config") else net.config
    softcap = getattr(cfg, "final_logit_softcapping", None)
    scale = getattr(cfg, "logit_scale", None) or getattr(cfg, "output_multiplier", None) or getattr(
        cfg, "lm_head_multiplier", None
    )
    if scale is None and getattr(cfg, "logits_scaling", None):
        scale = cfg.logits_scaling if cfg.model_type == "hyperclovax" else 1 / cfg.logits_scaling
    vocab = head.weight.shape[0]
    tile = tile_tokens or max(1, (1 << 27) // vocab)  # ~512 MiB of fp32 logits per tile

    def forward(batch: dict) -> dict:
        ids = batch["input_ids"]
        h = backbone(input_ids=ids, attention_mask=batch.get("attention_mask"), use_cache=False).last_hidden_state
        rows, cols = batch["target_rows"], batch["target_cols"]  # from logprob_targets, on the host
        out = torch.zeros(ids.shape[0], dtype=torch.float64, device=ids.device)
        for s in range(0, len(rows), tile):
            r, c = rows[s : s + tile], cols[s : s + tile]
            logits = head(h[r, c - 1]).float()
            if scale is not None:
                logits = logits * scale
            if softcap is not None:
                logits = torch.tanh(logits / softcap) * softcap
            lp = logits.log_softmax(-1).gather(1, ids[r, c].unsqueeze(1)).squeeze(1)
            out.index_add_(0, r, lp.double())
        return {"logp_sum": out}

    return forward


def logprob_targets(lengths: np.ndarray, rows: dict) -> dict[str, np.ndarray]:
    """Engine `prepare` hook: (row, position) of every scored token, positions [max(start, 1), length).

    Computed on the host in the collate thread, so the forward never waits on a device-side nonzero().
    """
    first = np.maximum(rows["start"], 1)
    counts = np.clip(lengths - first, 0, None)
    row = np.repeat(np.arange(len(lengths)), counts)
    col = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(first, counts)
    return {"target_rows": row, "target_cols": col}


@dataclass
class _Plan:
    """What a score job knows before loading its model."""

    table_name: str
    files: ModelFiles | None
    max_length: int | None
    todo: sets.Pending | None = None
    stored: dict | None = None  # the set's provenance when nothing is left to do


def _plan(
    store: Store,
    model: str | Loaded,
    name: str | None,
    prefix: str,
    max_length: int | None,
    cap: int,
    expected: dict[str, Any],
    device: str | None,
    dtype: str | None,
    window_rows: int,
) -> _Plan:
    """Name the set, check --max-length against the model's files, and find what is left to do.

    When the set holds every response already and the files match its provenance, ``stored``
    is set and the caller returns without loading a weight.
    """
    model_name = model.provenance.get("model", "model") if isinstance(model, Loaded) else model
    table_name = f"{prefix}_{sets.check_name(name or default_set_name(model_name))}"
    store.table("responses"), store.table("prompts")  # fail before loading: "run `pairsift ingest` first"
    files = None if isinstance(model, Loaded) else inspect_model(model)
    if files is not None:
        max_length = max_length_for(max_length, files.context_length, cap)
    # A loaded model's limit is checked against its config once the caller has it.
    plan = _Plan(table_name, files, max_length if files is not None else None)
    if not store.has_table(table_name):
        return plan
    plan.todo = _pending(store, table_name, window_rows)
    if plan.todo.total == 0:
        known = known_provenance(model, files, device, dtype)
        known.update({k: v for k, v in {**expected, "max_length": max_length}.items() if v is not None})
        plan.stored = sets.check_unchanged(store, table_name, known)
    return plan


def logprobs_provenance(loaded: Loaded, chat: bool, max_length: int) -> dict[str, Any]:
    """A log-prob set's provenance; shared by every executor so that any of them resumes a set."""
    tok = loaded.tokenizer
    return {
        **loaded.provenance,
        "kind": "logprobs",
        "method": "teacher_forcing",
        "chat_template": chat,
        "template": getattr(tok, "chat_template", None) if chat else None,
        "eos_appended": not chat,
        "eos_token": tok.eos_token,
        "max_length": int(max_length),
        "truncation": "keep_start",
        "completion_start": "common_prefix(tok(prompt), tok(prompt + completion))",
        "logsoftmax_dtype": "float32",
        "pairsift_version": sets.version(),
    }


def score_logprobs(
    store: Store,
    model: str | Loaded,
    name: str | None = None,
    device: str | None = DEFAULTS.device,
    dtype: str | None = DEFAULTS.dtype,
    max_length: int | None = None,
    batch_tokens: int | None = DEFAULTS.batch_tokens,
    chat_template: bool | None = None,
    chunk_rows: int = DEFAULTS.chunk_rows,
    window_rows: int = DEFAULTS.window_rows,
    progress: Callable[[int, int, str], None] | None = None,
) -> LogprobsReport:
    """Log-probs of every response given its prompt under `model` into ``logprobs_<name>``.

    `max_length` defaults to the model's context, at most TRL's 1024; a larger value than the
    context is refused. A re-run with nothing left to do returns without loading the weights.
    `progress(tokens_done, tokens_total, note)` as :class:`~pairsift.compute.engine.JobProgress`.
    """
    started = time.perf_counter()
    plan = _plan(store, model, name, "logprobs", max_length, TRL_MAX_LENGTH,
                 {"kind": "logprobs", "chat_template": chat_template}, device, dtype, window_rows)
    table_name, files, todo, stored = plan.table_name, plan.files, plan.todo, plan.stored
    if stored is not None:
        return LogprobsReport(table=table_name, model=stored.get("model"), rows_total=todo.already,
                              already_done=todo.already, seconds=round(time.perf_counter() - started, 3),
                              model_loaded=False, chat_template=stored.get("chat_template"),
                              max_length=stored.get("max_length"), provenance=stored)
    loaded = model if isinstance(model, Loaded) else load(model, "causal_lm", device, dtype, files=files)
    net, tok = loaded.model, loaded.tokenizer
    max_length = plan.max_length or max_length_for(max_length, loaded.context_length, TRL_MAX_LENGTH)
    device = str(next(net.parameters()).device)
    chat = _use_chat(store, tok, chat_template)
    prov = logprobs_provenance(loaded, chat, max_length)
    table = sets.open_set(store, table_name, logprobs_schema(prov))
    todo = todo or _pending(store, table_name, window_rows)
    frames = _joined(todo, _prompts(store))
    total, already = todo.total, todo.already
    report = LogprobsReport(table=table_name, model=prov.get("model"), rows_total=total + already,
                            already_done=already, chat_template=chat, max_length=int(max_length), provenance=prov)
    schema = table.schema
    job = JobProgress(progress, total)

    def windows() -> Iterator[tuple[pl.Series, Ragged, np.ndarray, np.ndarray]]:
        for w in frames:
            if chat:
                prompts = [_msgs(m) for m in w.get_column("prompt_messages").to_list()]
                comps = [_msgs(m) for m in w.get_column("messages").to_list()]
            else:
                prompts = w.get_column("prompt_text").to_list()
                comps = w.get_column("text").to_list()
            seqs_all, starts = trl_tokenize_ragged(tok, prompts, comps, chat)
            del prompts, comps
            empty = w.get_column("text").str.strip_chars().str.len_chars().eq(0).to_numpy()
            yield w.get_column("response_id"), seqs_all, starts, empty

    engine = Engine(device, batch_tokens, pad_id=tok.pad_token_id or 0)
    forward = logprob_forward(net)
    with ChunkWriter(table.add, chunk_rows) as writer:
        for ids, seqs_all, starts, empty in background(windows(), depth=1):
            full_len = seqs_all.lengths
            comp = _completions(seqs_all, starts)
            kept_len = np.minimum(full_len, max_length)
            dropped = starts >= max_length
            scored = np.clip(kept_len - np.maximum(starts, 1), 0, None)
            truncated = full_len > max_length
            report.empty += int(empty.sum())
            report.truncated += int(truncated.sum())
            report.prompt_too_long += int(dropped.sum())
            keep = np.flatnonzero(~dropped)
            seqs = _truncated(seqs_all, keep, max_length)
            del seqs_all
            job.window(len(starts), int(seqs.lengths.sum()))
            if dropped.any():
                d = np.flatnonzero(dropped)
                writer.add(_logprob_rows(schema, ids.gather(d), np.full(len(d), np.nan), np.zeros(len(d), np.int64),
                                         comp.take(d), truncated[d]))
                job.advance(len(d))
            batches = engine.run(forward, seqs, {"start": starts[keep]}, logprob_targets, on_batch=job.advance)
            for idx, out in chunked(batches, chunk_rows):
                rows = keep[idx]
                writer.add(_logprob_rows(schema, ids.gather(rows), out["logp_sum"], scored[rows], comp.take(rows),
                                         truncated[rows]))
    report.finish(writer.committed, engine, started)
    return report


def _completions(seqs: Ragged, starts: np.ndarray) -> pa.ListArray:
    """Each row's ids from its start on, as list<int32> (vectorised slicing of the flat values)."""
    lens = seqs.lengths - starts
    offsets = np.zeros(len(lens) + 1, dtype=np.int32)
    np.cumsum(lens, out=offsets[1:])
    src = np.repeat(seqs.offsets[:-1] + starts, lens) + (np.arange(offsets[-1]) - np.repeat(offsets[:-1], lens))
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(seqs.values[src], pa.int32()))


def _truncated(seqs: Ragged, rows: np.ndarray, max_length: int) -> Ragged:
    """Rows `rows` of `seqs`, each cut to its first `max_length` ids."""
    lens = np.minimum(seqs.lengths[rows], max_length)
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    src = np.repeat(seqs.offsets[rows], lens) + (np.arange(offsets[-1]) - np.repeat(offsets[:-1], lens))
    return Ragged(seqs.values[src], offsets)


def _logprob_rows(schema: pa.Schema, ids: pl.Series, sums: np.ndarray, n_tokens: np.ndarray,
                  token_ids: pa.ListArray, truncated: np.ndarray) -> pa.Table:
    sums = np.asarray(sums, dtype=np.float64)
    n = np.asarray(n_tokens)
    mean = arrow_backed(sums.shape, np.float64)  # lives until the chunk is committed: see engine.chunked
    with np.errstate(invalid="ignore", divide="ignore"):
        np.divide(sums, np.maximum(n, 1), out=mean)
    mean[n <= 0] = np.nan
    return pa.table(
        {
            "response_id": ids.to_arrow().cast(pa.string()),
            "logp_sum": pa.array(sums, pa.float64(), from_pandas=True),
            "logp_mean": pa.array(mean, pa.float64(), from_pandas=True),
            "n_tokens": to_arrow(n.astype(np.int32)),
            "token_ids": token_ids,
            "truncated": pa.array(truncated, pa.bool_()),
        },
        schema=schema,
    )


# ---- rewards --------------------------------------------------------------------------------


def reward_forward(net: Any, label: int = 0) -> Callable[[dict], dict]:
    def forward(batch: dict) -> dict:
        logits = net(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).logits
        return {"reward": logits[:, label].float()}

    return forward


def check_label(loaded: Loaded, label: int) -> None:
    n_labels = int(getattr(loaded.model.config, "num_labels", 1))
    if not 0 <= label < n_labels:
        raise UsageError(f"--label {label}: the reward model has {n_labels} output(s)")


def rewards_provenance(loaded: Loaded, chat: bool, label: int, max_length: int) -> dict[str, Any]:
    """A reward set's provenance; shared by every executor so that any of them resumes a set."""
    return {
        **loaded.provenance,
        "kind": "reward",
        "label": label,
        "input": "chat_template(prompt + response)" if chat else "prompt + response",
        "template": getattr(loaded.tokenizer, "chat_template", None) if chat else None,
        "max_length": int(max_length),
        "truncation": "keep_start",
        "pairsift_version": sets.version(),
    }


def score_rewards(
    store: Store,
    model: str | Loaded,
    name: str | None = None,
    device: str | None = DEFAULTS.device,
    dtype: str | None = DEFAULTS.dtype,
    max_length: int | None = None,
    batch_tokens: int | None = DEFAULTS.batch_tokens,
    chat_template: bool | None = None,
    label: int = 0,
    chunk_rows: int = DEFAULTS.chunk_rows,
    window_rows: int = DEFAULTS.window_rows,
    progress: Callable[[int, int, str], None] | None = None,
) -> RewardsReport:
    """A reward model's score of every (prompt, response) into ``rewards_<name>``.

    `max_length` defaults to the model's context, at most 4096; a larger value than the context
    is refused. A re-run with nothing left to do returns without loading the weights.
    `progress(tokens_done, tokens_total, note)` as :class:`~pairsift.compute.engine.JobProgress`.
    """
    started = time.perf_counter()
    plan = _plan(store, model, name, "rewards", max_length, REWARD_MAX_LENGTH, {"kind": "reward", "label": label},
                 device, dtype, window_rows)
    table_name, files, todo, stored = plan.table_name, plan.files, plan.todo, plan.stored
    if stored is not None:
        return RewardsReport(table=table_name, model=stored.get("model"), rows_total=todo.already,
                             already_done=todo.already, seconds=round(time.perf_counter() - started, 3),
                             model_loaded=False, max_length=stored.get("max_length"), provenance=stored)
    loaded = model if isinstance(model, Loaded) else load(model, "reward", device, dtype, files=files)
    net, tok = loaded.model, loaded.tokenizer
    check_label(loaded, label)
    max_length = plan.max_length or max_length_for(max_length, loaded.context_length, REWARD_MAX_LENGTH)
    device = str(next(net.parameters()).device)
    chat = _use_chat(store, tok, chat_template)
    prov = rewards_provenance(loaded, chat, label, max_length)
    table = sets.open_set(store, table_name, rewards_schema(prov))
    todo = todo or _pending(store, table_name, window_rows)
    frames = _joined(todo, _prompts(store))
    total, already = todo.total, todo.already
    report = RewardsReport(table=table_name, model=prov.get("model"), rows_total=total + already,
                           already_done=already, chat_template=chat, max_length=int(max_length), provenance=prov)
    schema = table.schema
    job = JobProgress(progress, total)

    def windows() -> Iterator[tuple[pl.Series, Ragged, np.ndarray]]:
        for w in frames:
            if chat:
                texts = [
                    tok.apply_chat_template(_msgs(p) + _msgs(r), tokenize=False)
                    for p, r in zip(w.get_column("prompt_messages").to_list(), w.get_column("messages").to_list())
                ]
            else:
                texts = (w.get_column("prompt_text") + w.get_column("text")).to_list()
            seqs, truncated = tokenize(tok, texts, max_length)
            yield w.get_column("response_id"), seqs, truncated

    engine = Engine(device, batch_tokens, pad_id=tok.pad_token_id or 0)
    forward = reward_forward(net, label)
    with ChunkWriter(table.add, chunk_rows) as writer:
        for ids, seqs, truncated in background(windows(), depth=1):
            job.window(len(seqs), int(seqs.lengths.sum()))
            report.truncated += int(truncated.sum())
            for idx, out in chunked(engine.run(forward, seqs, on_batch=job.advance), chunk_rows):
                writer.add(pa.table({
                    "response_id": ids.gather(idx).to_arrow().cast(pa.string()),
                    "reward": to_arrow(out["reward"].astype(np.float64)),
                    "truncated": pa.array(truncated[idx]),
                }, schema=schema))
    report.finish(writer.committed, engine, started)
    return report
