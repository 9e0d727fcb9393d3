"""``embed`` / ``score`` on several GPUs of one node without Ray: ``torchrun`` or ``accelerate launch``.

    torchrun --nproc_per_node=8 -m pairsift.cli score logprobs --model PATH --as ref
    accelerate launch -m pairsift.cli embed --model PATH --name phi

Each rank runs the same command. When ``WORLD_SIZE`` > 1 (both launchers set it), the compute
commands take this path instead of the single-process one:

- every rank loads the model on its own device (``cuda:LOCAL_RANK``, or the CPU) and computes the
  set's provenance; rank 0 creates or checks the set and pins the versions everyone reads;
- every rank reads the same input windows (same pinned version, same order) and keeps the rows
  whose 64-bit key satisfies ``key % world == rank`` (content hashes, so the shares are even);
- it computes them with the single-process tokenisation, engine and forwards
  (:mod:`.workers`), writes its rows as Lance fragments and sends their metadata to rank 0 with
  ``torch.distributed.gather_object``;
- rank 0 commits once per chunk of ``chunk_rows`` rows (an Append at a pinned read version,
  duplicates removed, :mod:`.commit`). Killed and re-run, the job resumes like the single
  process does. Every rank returns the same report.

Log-probs are computed exactly as in one process (same tokenisation and forward, fp32
log-softmax), so they are what Hugging Face / TRL compute. The process group is NCCL on GPUs and
gloo on CPU (gloo also carries the metadata when the main group is NCCL).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ...errors import PairsiftError, UsageError
from .. import sets
from ..config import DEFAULTS
from ..embed import embed_target
from ..models import default_set_name
from .commit import FragmentCommitter, Staged, write_staged
from .report import (
    REPORTS,
    ScaledEmbedReport,
    ScaledLogprobsReport,
    ScaledRewardsReport,
)
from .workers import PREFIX, JobSpec, nothing_left, prompts_table

if TYPE_CHECKING:
    from ...store import Store


def launched() -> bool:
    """True when this process is one of several ranks (torchrun / accelerate launch)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def embed_ranks(store: Store, model: str | None = None, target: str = "responses", name: str | None = None,
                device: str | None = DEFAULTS.device, dtype: str | None = DEFAULTS.dtype,
                max_length: int | None = None, batch_tokens: int | None = DEFAULTS.batch_tokens,
                pooling: str | None = None, append_eos: bool = False, chunk_rows: int = DEFAULTS.chunk_rows,
                window_rows: int = DEFAULTS.window_rows,
                progress: Callable[[int, int], None] | None = None) -> ScaledEmbedReport:
    """:func:`pairsift.compute.embed.embed` as one rank of torchrun / accelerate launch."""
    model, name = embed_target(store, model, target, name)
    spec = JobSpec("embed", model, dtype=dtype, batch_tokens=batch_tokens, max_length=max_length, target=target,
                   pooling=pooling, append_eos=append_eos)
    return _run(store, spec, name, device, chunk_rows, window_rows, progress)


def score_logprobs_ranks(store: Store, model: str, name: str | None = None, device: str | None = DEFAULTS.device,
                         dtype: str | None = DEFAULTS.dtype, max_length: int | None = None,
                         batch_tokens: int | None = DEFAULTS.batch_tokens, chat_template: bool | None = None,
                         chunk_rows: int = DEFAULTS.chunk_rows, window_rows: int = DEFAULTS.window_rows,
                         progress: Callable[[int, int], None] | None = None) -> ScaledLogprobsReport:
    """:func:`pairsift.compute.score.score_logprobs` as one rank of torchrun / accelerate launch."""
    from ..score import has_messages

    name = sets.check_name(name or default_set_name(model))
    store.table("responses"), store.table("prompts")
    spec = JobSpec("logprobs", model, dtype=dtype, batch_tokens=batch_tokens, max_length=max_length,
                   chat_template=chat_template, has_messages=has_messages(store))
    return _run(store, spec, name, device, chunk_rows, window_rows, progress)


def score_rewards_ranks(store: Store, model: str, name: str | None = None, device: str | None = DEFAULTS.device,
                        dtype: str | None = DEFAULTS.dtype, max_length: int | None = None,
                        batch_tokens: int | None = DEFAULTS.batch_tokens, chat_template: bool | None = None,
                        label: int = 0, chunk_rows: int = DEFAULTS.chunk_rows,
                        window_rows: int = DEFAULTS.window_rows,
                        progress: Callable[[int, int], None] | None = None) -> ScaledRewardsReport:
    """:func:`pairsift.compute.score.score_rewards` as one rank of torchrun / accelerate launch."""
    from ..score import has_messages

    name = sets.check_name(name or default_set_name(model))
    store.table("responses"), store.table("prompts")
    spec = JobSpec("reward", model, dtype=dtype, batch_tokens=batch_tokens, max_length=max_length,
                   chat_template=chat_template, has_messages=has_messages(store), label=label)
    return _run(store, spec, name, device, chunk_rows, window_rows, progress)


class _Group:
    """The process group (created here unless the launcher's code already did) and a gloo group for objects."""

    def __init__(self, cuda: bool):
        import torch.distributed as dist

        self.dist = dist
        self.owned = not dist.is_initialized()
        if self.owned:
            dist.init_process_group(backend="nccl" if cuda else "gloo")
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.objects = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None

    def broadcast(self, obj):
        box = [obj]
        self.dist.broadcast_object_list(box, src=0, group=self.objects)
        return box[0]

    def gather(self, obj) -> list | None:
        out = [None] * self.world if self.rank == 0 else None
        self.dist.gather_object(obj, out, dst=0, group=self.objects)
        return out

    def close(self):
        if self.owned:
            self.dist.destroy_process_group()


def _device(device: str | None) -> tuple[str, bool]:
    """This rank's device: its own GPU (LOCAL_RANK) when CUDA is asked for or auto and visible."""
    import torch

    from ..device import check_device

    device = check_device(device)
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: no CUDA device is visible here; use --device cpu")
    if not cuda:
        return "cpu", False
    local = int(os.environ.get("LOCAL_RANK", "0"))
    torch.cuda.set_device(local)
    return f"cuda:{local}", True


def _run(store: Store, spec: JobSpec, name: str, device: str | None, chunk_rows: int, window_rows: int,
         progress: Callable[[int, int], None] | None) -> Any:
    from ...store.ids import id_keys

    started = time.perf_counter()
    device, cuda = _device(device)
    cls = REPORTS[spec.kind]
    table_name = f"{PREFIX[spec.kind]}_{name}"
    common = {"executor": "torch.distributed", "device": device, **({"target": spec.target} if spec.kind == "embed"
                                                                     else {})}
    spec = spec.on(device)
    stored = nothing_left(store, spec, name, device)  # every rank sees the same answer
    if stored is not None:
        prov, rows = stored
        extra = {k: prov.get(k) for k in ("chat_template", "max_length") if k in cls.__dataclass_fields__}
        return cls(table=table_name, model=prov.get("model"), rows_total=rows, already_done=rows, model_loaded=False,
                   provenance=prov, seconds=round(time.perf_counter() - started, 3),
                   workers=int(os.environ.get("WORLD_SIZE", "1")), **common, **extra)
    group = _Group(cuda)
    try:
        t_load = time.perf_counter()
        worker = spec.build(prompts_table(store) if spec.needs_prompts else None)
        info = worker.info()
        # Rank 0 creates or checks the set and pins the versions; a refusal reaches every rank.
        state = None
        if group.rank == 0:
            try:
                table = sets.open_set(store, table_name, info["schema"])
                committer = FragmentCommitter(store.table_uri(table_name), spec.output_key, store.storage_options)
                state = {"schema": table.schema, "out_version": committer.version,
                         "in_version": store.dataset(spec.input_table).version, "repaired": committer.repaired}
            except PairsiftError as e:
                state = {"error": e}
        state = group.broadcast(state)
        if "error" in state:
            raise state["error"]
        load_seconds = time.perf_counter() - t_load
        done_col = store.dataset(table_name, state["out_version"]).to_table(columns=[spec.output_key]).column(0)
        done = np.unique(id_keys(done_col)) if len(done_col) else np.empty(0, np.uint64)
        source = store.dataset(spec.input_table, state["in_version"])
        uri = store.table_uri(table_name)
        mine_total = already = 0
        for batch in source.to_batches(columns=[spec.input_key], batch_size=1 << 20):
            keys = id_keys(batch.column(0))
            fresh = _fresh(done, keys)
            already += int((~fresh).sum())
            mine_total += int((fresh & (keys % np.uint64(group.world) == group.rank)).sum())
        totals = group.gather(mine_total)
        total = sum(totals) if group.rank == 0 else 0
        prov = info["provenance"]
        extra = {}
        if "chat_template" in cls.__dataclass_fields__:
            extra = {"chat_template": info.get("chat_template"), "max_length": int(info["max_length"])}
        report = cls(table=table_name, model=prov.get("model"), rows_total=total + already, already_done=already,
                     provenance=prov, workers=group.world, model_load_seconds=round(load_seconds, 3), **common,
                     **extra)
        counted = [k for k in ("blank", "truncated", "empty", "prompt_too_long") if hasattr(report, k)]
        pending: list[Staged] = []
        pending_rows = done_rows = 0
        for batch in source.to_batches(columns=spec.input_columns, batch_size=window_rows):
            keys = id_keys(batch.column(spec.input_key))
            take = _fresh(done, keys) & (keys % np.uint64(group.world) == group.rank)
            rows, counts = worker.run(batch.filter(pa.array(take)))
            staged = write_staged(rows, uri, spec.output_key, state["schema"], store.storage_options)
            gathered = group.gather((staged.to_wire(), int(take.sum()), counts))
            if group.rank != 0:
                continue
            for wire, n, c in gathered:
                s = Staged.from_wire(*wire)
                if s.rows:
                    pending.append(s)
                    pending_rows += s.rows
                done_rows += n
                for k in counted:
                    setattr(report, k, getattr(report, k) + int(c.get(k, 0)))
                report.tokens += int(c["tokens"])
                report.padded_tokens += int(c.get("padded_tokens", 0))
                report.compute_seconds += c["compute_seconds"]
            if report.first_result_seconds is None and done_rows:
                report.first_result_seconds = round(time.perf_counter() - started, 3)
            if pending_rows >= chunk_rows:
                report.written += committer.commit(pending)
                pending, pending_rows = [], 0
            if progress:
                progress(done_rows, total)
        if group.rank == 0:
            report.written += committer.commit(pending)
            report.commits = committer.commits
            report.commit_seconds = round(committer.commit_seconds, 3)
            report.duplicates_removed = state["repaired"] + committer.duplicates
            report.compute_seconds = round(report.compute_seconds, 3)
            report.seconds = round(time.perf_counter() - started, 3)
        return group.broadcast(report if group.rank == 0 else None)
    finally:
        group.close()


def _fresh(done: np.ndarray, keys: np.ndarray) -> np.ndarray:
    if not len(done):
        return np.ones(len(keys), bool)
    pos = np.minimum(np.searchsorted(done, keys), len(done) - 1)
    return done[pos] != keys
