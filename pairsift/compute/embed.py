"""Response and prompt embeddings (docs/METHODS.md §1 REAL, §4 RPO).

An embedding is the masked mean of the model's last hidden state over the text's tokens
(padding excluded), pooled and L2-normalised in fp32 whatever the forward dtype. Responses are
embedded from their text ALONE (never prompt + response). Sentence-transformers models use the
pooling and max length of their own config (all-MiniLM-L6-v2: mean, 256 tokens).

Policies, recorded in each set's provenance and counted in the run report:
- **Blank text** (empty or whitespace-only) is *not embeddable*: its row has a null vector and
  ``n_tokens`` 0. Similarities with it are then null and never selected — no NaN, no made-up
  vector that would look like a real response.
- **Over-long text** keeps its first ``max_length`` tokens (special tokens such as [SEP] kept by
  the tokenizer) and is flagged ``truncated``.
- **EOS**: not appended by default (as the REAL reference does for HH); ``append_eos=True``
  appends the tokenizer's EOS id (the reference does it for SHP).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa

from ..errors import UsageError
from ..store.schema import embeddings_schema
from . import sets
from .config import DEFAULTS, EMBED_MAX_LENGTH
from .engine import ChunkWriter, Engine, JobProgress, background, chunked, to_arrow
from .models import MINILM, Loaded, ModelFiles, default_set_name, inspect_model, known_provenance, load, max_length_for
from .report import ComputeReport
from .tokenize import tokenize

if TYPE_CHECKING:
    import polars as pl

    from ..store import Store

POOLINGS = ("mean", "cls", "last")


@dataclass
class EmbedReport(ComputeReport):
    """What `embed` did: rows written to ``embeddings_<name>``, blank and truncated texts."""

    target: str = "responses"
    blank: int = 0

    _COUNTS: ClassVar[dict[str, str]] = {"blank": "blank", "truncated": "truncated"}


def embed_target(store: Store, model: str | Loaded | None, target: str, name: str | None) -> tuple[str | Loaded, str]:
    """(model, set name) of an embed job, checked before any model loads: the target table exists
    (else "run `pairsift ingest` first"), the model defaults to MiniLM for prompts only, the set
    name defaults to the model's (``prompt_`` first for prompts). Shared by every executor."""
    if target not in ("responses", "prompts"):
        raise UsageError(f"--target {target!r}: use 'responses' or 'prompts'")
    if model is None:
        if target == "responses":
            raise UsageError("--model is required for response embeddings (e.g. microsoft/phi-1_5)")
        model = MINILM
    if name is None:
        base = default_set_name(model.provenance.get("model", "model") if isinstance(model, Loaded) else model)
        name = f"prompt_{base}" if target == "prompts" else base
    sets.check_name(name)
    store.table(target)
    return model, name


def embed(
    store: Store,
    model: str | Loaded | None = None,
    target: str = "responses",
    name: str | None = None,
    device: str | None = DEFAULTS.device,
    dtype: str | None = DEFAULTS.dtype,
    max_length: int | None = None,
    batch_tokens: int | None = DEFAULTS.batch_tokens,
    pooling: str | None = None,
    append_eos: bool = False,
    chunk_rows: int = DEFAULTS.chunk_rows,
    window_rows: int = DEFAULTS.window_rows,
    progress: Callable[[int, int, str], None] | None = None,
) -> EmbedReport:
    """Embed every response (or prompt) not yet in ``embeddings_<name>``; return a run report.

    `progress(tokens_done, tokens_total, "<rows done>/<rows total> rows")` is called after each
    batch (see :class:`~pairsift.compute.engine.JobProgress`). Killed at any point, a re-run
    with the same arguments finishes the rest: rows are committed in chunks of `chunk_rows` and
    ids already in the table are skipped. A re-run with nothing left to do checks the model's
    files against the set's provenance and returns without loading the weights.

    `max_length` defaults to the model's own (sentence-transformers' ``max_seq_length``, else its
    context, at most 2048); a value above the model's context is refused.
    """
    if pooling is not None and pooling not in POOLINGS:
        raise UsageError(f"--pooling {pooling!r}: use one of {', '.join(POOLINGS)}")
    model, name = embed_target(store, model, target, name)
    table_name = f"embeddings_{name}"
    started = time.perf_counter()
    key = "response_id" if target == "responses" else "prompt_id"
    files = None if isinstance(model, Loaded) else inspect_model(model)
    if files is not None:
        max_length = max_length_for(max_length, files.context_length, files.native_max_length or EMBED_MAX_LENGTH)

    todo = None
    if store.has_table(table_name):
        todo = sets.Pending(store, target, [key, "text"], key, table_name, "id", window_rows)
        if todo.total == 0:
            expected = _expected(model, files, target, device, dtype, max_length, pooling, append_eos)
            stored = sets.check_unchanged(store, table_name, expected)
            return EmbedReport(
                table=table_name, target=target, model=stored.get("model"), rows_total=todo.already,
                already_done=todo.already, seconds=round(time.perf_counter() - started, 3), model_loaded=False,
                provenance=stored,
            )

    loaded = model if isinstance(model, Loaded) else load(model, "embed", device, dtype, files=files)
    net, tok = loaded.model, loaded.tokenizer
    device = str(next(net.parameters()).device)
    if files is None:
        max_length = max_length_for(max_length, loaded.context_length, loaded.native_max_length or EMBED_MAX_LENGTH)
    prov = embedding_provenance(loaded, target, pooling, max_length, append_eos)
    pooling, dim = prov["pooling"], prov["dim"]
    schema = embeddings_schema(dim, prov)
    table = sets.open_set(store, table_name, schema)

    if todo is None:
        todo = sets.Pending(store, target, [key, "text"], key, table_name, "id", window_rows)
    total = todo.total
    report = EmbedReport(
        table=table_name, target=target, model=prov.get("model"), rows_total=total + todo.already,
        already_done=todo.already, provenance=prov,
    )
    job = JobProgress(progress, total)

    def windows() -> Iterator[tuple[Any, np.ndarray, np.ndarray, Any, np.ndarray]]:
        for w in todo:
            ids = w.get_column(key)
            texts = w.get_column("text")
            blank = texts.str.strip_chars().str.len_chars().fill_null(0).eq(0).to_numpy()
            keep = np.flatnonzero(~blank)
            text_list = texts.to_list()
            seqs, truncated = tokenize(tok, [text_list[i] for i in keep], max_length, append_eos)
            yield ids, blank, keep, seqs, truncated

    engine = Engine(device, batch_tokens, pad_id=tok.pad_token_id or 0)
    forward = pool_forward(net, pooling)
    with ChunkWriter(table.add, chunk_rows) as writer:
        for ids, blank, keep, seqs, truncated in background(windows(), depth=1):
            lengths = seqs.lengths
            job.window(len(blank), int(lengths.sum()))
            if blank.any():
                b = np.flatnonzero(blank)
                writer.add(_rows(schema, ids.gather(b), np.zeros((len(b), dim), np.float32), np.zeros(len(b), np.int32),
                                 np.zeros(len(b), bool), null=np.ones(len(b), bool)))
                report.blank += len(b)
                job.advance(len(b))
            report.truncated += int(truncated.sum())
            for idx, out in chunked(engine.run(forward, seqs, on_batch=job.advance), chunk_rows):
                writer.add(_rows(schema, ids.gather(keep[idx]), out["vector"], lengths[idx], truncated[idx]))
    report.finish(writer.committed, engine, started)
    return report


def embedding_provenance(loaded: Loaded, target: str, pooling: str | None, max_length: int,
                         append_eos: bool) -> dict[str, Any]:
    """The set's provenance (pooling resolved), for `max_length` already resolved; checks the options.

    Shared by every executor (this process, Ray actors, torchrun ranks), so a set written by one
    is resumed by another.
    """
    pooling = pooling or loaded.st_pooling or "mean"
    if pooling not in POOLINGS:
        raise UsageError(f"--pooling {pooling!r}: use one of {', '.join(POOLINGS)}")
    if append_eos and loaded.tokenizer.eos_token_id is None:
        raise UsageError("--append-eos: the tokenizer has no EOS token")
    return {
        **loaded.provenance,
        "kind": "embedding",
        "target": target,
        "dim": int(loaded.model.config.hidden_size),
        "pooling": pooling,
        "pool_dtype": "float32",
        "normalized": "l2",
        "max_length": int(max_length),
        "truncation": "keep_start",
        "add_special_tokens": True,
        "eos_appended": bool(append_eos),
        "blank_text": "null vector",
        "pairsift_version": sets.version(),
    }


def _expected(
    model: str | Loaded,
    files: ModelFiles | None,
    target: str,
    device: str | None,
    dtype: str | None,
    max_length: int | None,
    pooling: str | None,
    append_eos: bool,
) -> dict[str, Any]:
    """The provenance keys a run would record that are known without loading the weights."""
    out = known_provenance(model, files, device, dtype)
    if files and files.config:  # a hub id not downloaded yet has no config to read a default from
        out["pooling"] = pooling or files.st_pooling or "mean"
    if pooling:
        out["pooling"] = pooling
    if max_length is not None:
        out["max_length"] = int(max_length)
    out.update({"kind": "embedding", "target": target, "eos_appended": bool(append_eos)})
    return out


def pool_forward(net: Any, pooling: str = "mean") -> Callable[[dict], dict]:
    """The engine forward: last hidden state -> pooled, L2-normalised fp32 vectors."""
    import torch
    import torch.nn.functional as F

    def forward(batch: dict) -> dict:
        mask = batch.get("attention_mask")
        h = net(input_ids=batch["input_ids"], attention_mask=mask).last_hidden_state
        lengths = batch["lengths"]
        if pooling == "mean":
            if mask is None:
                v = h.float().mean(dim=1)
            else:
                m = mask.to(torch.float32).unsqueeze(1)  # [B, 1, T]
                v = torch.bmm(m, h.float()).squeeze(1) / lengths.unsqueeze(1).to(torch.float32)
        elif pooling == "cls":
            v = h[:, 0].float()
        else:  # last real token (right padding)
            v = h[torch.arange(h.shape[0], device=h.device), lengths - 1].float()
        return {"vector": F.normalize(v, dim=-1)}

    return forward


def _rows(schema: pa.Schema, ids: pl.Series, vecs: np.ndarray, n_tokens: np.ndarray, truncated: np.ndarray,
          null: np.ndarray | None = None) -> pa.Table:
    dim = schema.field("vector").type.list_size
    return pa.table(
        {
            "id": ids.to_arrow().cast(pa.string()),
            "vector": sets.vectors(vecs, dim, null),
            "n_tokens": to_arrow(np.asarray(n_tokens, np.int32)),
            "truncated": pa.array(truncated, pa.bool_()),
        },
        schema=schema,
    )
