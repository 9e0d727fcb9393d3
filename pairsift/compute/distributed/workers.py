"""The model side of a distributed job: rows in, output rows out, exactly as the single-process path.

A worker holds one loaded model and turns a batch of input rows (an Arrow table: ids, texts,
prompt ids) into rows of the output set, using the single-process building blocks unchanged:
:func:`~pairsift.compute.tokenize.tokenize` / :func:`~pairsift.compute.tokenize.trl_tokenize`, the
:class:`~pairsift.compute.engine.Engine` with :func:`~pairsift.compute.embed.pool_forward`,
:func:`~pairsift.compute.score.logprob_forward` or :func:`~pairsift.compute.score.reward_forward`,
the provenance functions and the row layouts. So a set written by Ray actors or torchrun ranks
holds the same numbers (up to float summation order across batches) and the same provenance as
one written by ``pairsift embed`` / ``pairsift score`` in one process, and any executor resumes
a set another one started.

A :class:`JobSpec` is what travels to each actor or rank (a few strings and numbers); the worker
is built where the model runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import polars as pl
import pyarrow as pa

from ...errors import UsageError
from ...store.schema import embeddings_schema, logprobs_schema, rewards_schema
from .. import sets
from ..config import DEFAULTS

KINDS = ("embed", "logprobs", "reward")


@dataclass(frozen=True)
class JobSpec:
    """A compute job's options, as every worker needs them (picklable, small)."""

    kind: str  # "embed" | "logprobs" | "reward"
    model: str
    device: str = "cpu"
    dtype: str | None = None
    batch_tokens: int | None = None
    max_length: int | None = None
    target: str = "responses"  # embed: "responses" or "prompts"
    pooling: str | None = None
    append_eos: bool = False
    chat_template: bool | None = None  # score: None is auto
    has_messages: bool = False  # score: every prompt and response has chat messages (from the store)
    label: int = 0  # reward: which logit

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown job kind {self.kind!r}")

    @property
    def input_table(self) -> str:
        return self.target if self.kind == "embed" else "responses"

    @property
    def input_key(self) -> str:
        return "prompt_id" if (self.kind == "embed" and self.target == "prompts") else "response_id"

    @property
    def input_columns(self) -> list[str]:
        if self.kind == "embed":
            return [self.input_key, "text"]
        return ["response_id", "prompt_id", "text", "messages"]

    @property
    def output_key(self) -> str:
        return "id" if self.kind == "embed" else "response_id"

    @property
    def needs_prompts(self) -> bool:
        return self.kind != "embed"

    def on(self, device: str) -> JobSpec:
        return replace(self, device=device)

    def build(self, prompts: pa.Table | None = None, threads: int | None = None):
        """Load the model here and return the worker (`prompts`: prompt_id, prompt_text, prompt_messages)."""
        import torch

        from ..models import inspect_model, load

        if threads:
            torch.set_num_threads(threads)
        kind = {"embed": "embed", "logprobs": "causal_lm", "reward": "reward"}[self.kind]
        files = inspect_model(self.model)  # as the single-process jobs do: limits read from the files
        loaded = load(self.model, kind, self.device, self.dtype, files=files)
        cls = {"embed": EmbedWorker, "logprobs": LogprobWorker, "reward": RewardWorker}[self.kind]
        return cls(self, loaded, files, prompts)


class _Worker:
    """Shared parts: the engine on the model's device, counters, the output schema."""

    schema: pa.Schema
    provenance: dict
    counts: tuple[str, ...] = ()

    def __init__(self, spec: JobSpec, loaded):
        from ..engine import Engine

        self.spec, self.loaded = spec, loaded
        self.tok = loaded.tokenizer
        self.device = str(next(loaded.model.parameters()).device)
        self.engine = Engine(self.device, spec.batch_tokens, pad_id=self.tok.pad_token_id or 0)

    def info(self) -> dict:
        """What the driver needs before any row is computed: the set's provenance and schema."""
        return {"provenance": self.provenance, "schema": self.schema, "max_length": self.max_length}

    def run(self, batch: pa.Table) -> tuple[pa.Table, dict]:
        """Output rows for a batch of input rows, and the counts of the run report."""
        t0 = time.perf_counter()
        tokens0, padded0 = self.engine.tokens, self.engine.padded_tokens
        counts = dict.fromkeys(self.counts, 0)
        parts = list(self._rows(pl.from_arrow(batch), counts)) if batch.num_rows else []
        counts["tokens"] = self.engine.tokens - tokens0
        counts["padded_tokens"] = self.engine.padded_tokens - padded0
        counts["compute_seconds"] = time.perf_counter() - t0
        table = pa.concat_tables(parts).combine_chunks() if parts else self.schema.empty_table()
        return table, counts

    def _rows(self, w: pl.DataFrame, counts: dict):
        raise NotImplementedError


class EmbedWorker(_Worker):
    """Rows of ``embeddings_<set>``, as :func:`pairsift.compute.embed.embed` computes them."""

    counts = ("blank", "truncated")

    def __init__(self, spec: JobSpec, loaded, files, prompts=None):
        from ..config import EMBED_MAX_LENGTH
        from ..embed import embedding_provenance, pool_forward
        from ..models import max_length_for

        super().__init__(spec, loaded)
        self.max_length = max_length_for(spec.max_length, files.context_length,
                                         files.native_max_length or EMBED_MAX_LENGTH)
        self.provenance = embedding_provenance(loaded, spec.target, spec.pooling, self.max_length, spec.append_eos)
        self.dim = self.provenance["dim"]
        self.schema = embeddings_schema(self.dim, self.provenance)
        self.forward = pool_forward(loaded.model, self.provenance["pooling"])

    def _rows(self, w: pl.DataFrame, counts: dict):
        from ..embed import _rows
        from ..tokenize import tokenize

        schema, dim = self.schema, self.dim
        ids = w.get_column(self.spec.input_key)
        texts = w.get_column("text")
        blank = texts.str.strip_chars().str.len_chars().fill_null(0).eq(0).to_numpy()
        keep = np.flatnonzero(~blank)
        text_list = texts.to_list()
        seqs, truncated = tokenize(self.tok, [text_list[i] for i in keep], self.max_length, self.spec.append_eos)
        if blank.any():
            b = np.flatnonzero(blank)
            counts["blank"] += len(b)
            yield _rows(schema, ids.gather(b), np.zeros((len(b), dim), np.float32), np.zeros(len(b), np.int32),
                        np.zeros(len(b), bool), null=np.ones(len(b), bool))
        counts["truncated"] += int(truncated.sum())
        lengths = seqs.lengths
        for idx, out in self.engine.run(self.forward, seqs):
            yield _rows(schema, ids.gather(keep[idx]), out["vector"], lengths[idx].astype(np.int32), truncated[idx])


class _ScoreWorker(_Worker):
    """Score jobs join each batch of responses with its prompts (held once per worker)."""

    def __init__(self, spec: JobSpec, loaded, prompts: pa.Table | None):
        from ..score import chat_choice

        super().__init__(spec, loaded)
        if prompts is None:
            raise UsageError("a score worker needs the prompts table")
        self.prompts = pl.from_arrow(prompts)
        self.chat = chat_choice(spec.has_messages, self.tok, spec.chat_template)

    def info(self) -> dict:
        return {**super().info(), "chat_template": self.chat}

    def _joined(self, w: pl.DataFrame) -> pl.DataFrame:
        return w.join(self.prompts, on="prompt_id", how="inner")


class LogprobWorker(_ScoreWorker):
    """Rows of ``logprobs_<name>``, as :func:`pairsift.compute.score.score_logprobs` computes them."""

    counts = ("empty", "truncated", "prompt_too_long")

    def __init__(self, spec: JobSpec, loaded, files, prompts: pa.Table | None):
        from ..config import TRL_MAX_LENGTH
        from ..models import max_length_for
        from ..score import logprob_forward, logprobs_provenance

        super().__init__(spec, loaded, prompts)
        self.max_length = max_length_for(spec.max_length, files.context_length, TRL_MAX_LENGTH)
        self.provenance = logprobs_provenance(loaded, self.chat, self.max_length)
        self.schema = logprobs_schema(self.provenance)
        self.forward = logprob_forward(loaded.model)

    def _rows(self, w: pl.DataFrame, counts: dict):
        from ..engine import Ragged
        from ..score import _completions, _logprob_rows, _truncated, logprob_targets
        from ..tokenize import messages as _msgs
        from ..tokenize import trl_tokenize

        w = self._joined(w)
        if w.height == 0:
            return
        schema, max_length = self.schema, self.max_length
        if self.chat:
            prompts = [_msgs(m) for m in w.get_column("prompt_messages").to_list()]
            comps = [_msgs(m) for m in w.get_column("messages").to_list()]
        else:
            prompts = w.get_column("prompt_text").to_list()
            comps = w.get_column("text").to_list()
        full, starts = trl_tokenize(self.tok, prompts, comps, self.chat)
        empty = w.get_column("text").str.strip_chars().str.len_chars().eq(0).to_numpy()
        seqs_all = Ragged.from_lists(full)
        ids = w.get_column("response_id")
        full_len = seqs_all.lengths
        comp = _completions(seqs_all, starts)
        kept_len = np.minimum(full_len, max_length)
        dropped = starts >= max_length
        scored = np.clip(kept_len - np.maximum(starts, 1), 0, None)
        truncated = full_len > max_length
        counts["empty"] += int(empty.sum())
        counts["truncated"] += int(truncated.sum())
        counts["prompt_too_long"] += int(dropped.sum())
        if dropped.any():
            d = np.flatnonzero(dropped)
            yield _logprob_rows(schema, ids.gather(d), np.full(len(d), np.nan), np.zeros(len(d), np.int64),
                                comp.take(d), truncated[d])
        keep = np.flatnonzero(~dropped)
        seqs = _truncated(seqs_all, keep, max_length)
        for idx, out in self.engine.run(self.forward, seqs, {"start": starts[keep]}, logprob_targets):
            rows = keep[idx]
            yield _logprob_rows(schema, ids.gather(rows), out["logp_sum"], scored[rows], comp.take(rows),
                                truncated[rows])


class RewardWorker(_ScoreWorker):
    """Rows of ``rewards_<name>``, as :func:`pairsift.compute.score.score_rewards` computes them."""

    counts = ("truncated",)

    def __init__(self, spec: JobSpec, loaded, files, prompts: pa.Table | None):
        from ..config import REWARD_MAX_LENGTH
        from ..models import max_length_for
        from ..score import check_label, reward_forward, rewards_provenance

        check_label(loaded, spec.label)
        super().__init__(spec, loaded, prompts)
        self.max_length = max_length_for(spec.max_length, files.context_length, REWARD_MAX_LENGTH)
        self.provenance = rewards_provenance(loaded, self.chat, spec.label, self.max_length)
        self.schema = rewards_schema(self.provenance)
        self.forward = reward_forward(loaded.model, spec.label)

    def _rows(self, w: pl.DataFrame, counts: dict):
        from ..tokenize import messages as _msgs
        from ..tokenize import tokenize

        w = self._joined(w)
        if w.height == 0:
            return
        if self.chat:
            texts = [
                self.tok.apply_chat_template(_msgs(p) + _msgs(r), tokenize=False)
                for p, r in zip(w.get_column("prompt_messages").to_list(), w.get_column("messages").to_list())
            ]
        else:
            texts = (w.get_column("prompt_text") + w.get_column("text")).to_list()
        seqs, truncated = tokenize(self.tok, texts, self.max_length)
        ids = w.get_column("response_id")
        counts["truncated"] += int(truncated.sum())
        for idx, out in self.engine.run(self.forward, seqs):
            yield pa.table({
                "response_id": ids.gather(idx).to_arrow().cast(pa.string()),
                "reward": pa.array(out["reward"].astype(np.float64)),
                "truncated": pa.array(truncated[idx]),
            }, schema=self.schema)


def prompts_table(store) -> pa.Table:
    """The prompts every score worker joins with (prompt_id, prompt_text, prompt_messages)."""
    from ..score import _prompts

    return _prompts(store).to_arrow()


#: Output table prefix of each job kind.
PREFIX = {"embed": "embeddings", "logprobs": "logprobs", "reward": "rewards"}


def nothing_left(store, spec: JobSpec, name: str, device: str) -> tuple[dict, int] | None:
    """(stored provenance, rows) when the set already holds every input row and the model files
    match it (checked without loading a weight, as the single-process jobs do); else None."""
    from ..models import inspect_model, max_length_for

    table = f"{PREFIX[spec.kind]}_{name}"
    if not store.has_table(table):
        return None
    todo = sets.Pending(store, spec.input_table, [spec.input_key], spec.input_key, table, spec.output_key)
    if todo.total:
        return None
    files = inspect_model(spec.model)
    if spec.kind == "embed":
        from ..config import EMBED_MAX_LENGTH
        from ..embed import _expected

        max_length = max_length_for(spec.max_length, files.context_length, files.native_max_length or EMBED_MAX_LENGTH)
        expected = _expected(spec.model, files, spec.target, device, spec.dtype, max_length, spec.pooling,
                             spec.append_eos)
        return sets.check_unchanged(store, table, expected), todo.already
    from ..config import REWARD_MAX_LENGTH, TRL_MAX_LENGTH
    from ..score import _plan

    cap, expected = ((TRL_MAX_LENGTH, {"kind": "logprobs", "chat_template": spec.chat_template})
                     if spec.kind == "logprobs" else (REWARD_MAX_LENGTH, {"kind": "reward", "label": spec.label}))
    plan = _plan(store, spec.model, name, PREFIX[spec.kind], spec.max_length, cap, expected, device, spec.dtype,
                 DEFAULTS.window_rows)
    return (plan.stored, todo.already) if plan.stored is not None else None
