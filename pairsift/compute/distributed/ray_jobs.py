"""``embed``, ``score logprobs`` and ``score reward`` on a Ray cluster (``--executor ray``).

How a job runs:

1. The driver joins or starts the cluster (:func:`.cluster.connect`) and starts the actor pool:
   ``workers`` Ray actors, each loading the model once (``num_gpus=1`` per actor on GPUs, a
   fraction of a CPU on CPU machines: see :mod:`.cluster`). The first actor to answer reports
   the set's provenance and schema, so a set that does not match is refused before any row is
   computed, exactly as in one process.
2. The driver creates or checks the set (:func:`pairsift.compute.sets.open_set`), reads the keys
   already in it (:class:`.commit.FragmentCommitter`, which also repairs duplicates a crash
   left), and pins the input table's version.
3. Ray Data reads the input table at that version, only the columns the job needs
   (``read_lance(columns=...)``: projection in Lance; "not done yet" is an anti-join with the
   output table, which is no Lance filter, so each actor drops done rows itself against the
   sorted done keys, shared zero-copy through the object store). ``streaming_split`` hands each
   actor its own stream of blocks as it asks for them: no shuffle, no driver in the data path.
4. Each actor turns every batch of ``batch_rows`` rows into one Lance fragment, which it writes
   itself; the fragment's metadata and row keys stream back to the driver.
5. The driver commits once per chunk (``chunk_rows`` rows or more): one Append at a pinned read
   version, duplicates removed (:mod:`.commit`). A job killed at any point (``kill -9`` of the
   driver included) resumes with no duplicate and no lost row: what was committed is skipped,
   what was not is invisible (orphan data files, removed by ``optimize``). A worker lost
   mid-job fails the job the same way; the re-run resumes.

The report has the keys of the single-process report plus ``executor``, ``workers``,
``commits``, ``duplicates_removed``, ``startup_seconds`` (joining/starting the cluster),
``model_load_seconds`` (until the first actor holds the model) and ``first_result_seconds``
(until the first batch is back: the fixed cost of a job).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import PairsiftError
from .. import sets
from ..config import DEFAULTS
from ..embed import embed_target
from ..models import default_set_name
from .cluster import (
    RayConfig,
    connect,
    place_models,
    require_ray,
    root_cause,
)
from .commit import FragmentCommitter, Staged
from .report import (
    REPORTS,
    ScaledEmbedReport,
    ScaledLogprobsReport,
    ScaledRewardsReport,
)
from .workers import PREFIX, JobSpec, nothing_left, prompts_table

if TYPE_CHECKING:
    from ...store import Store


def embed_ray(
    store: Store,
    model: str | None = None,
    target: str = "responses",
    name: str | None = None,
    device: str | None = DEFAULTS.device,
    dtype: str | None = DEFAULTS.dtype,
    max_length: int | None = None,
    batch_tokens: int | None = DEFAULTS.batch_tokens,
    pooling: str | None = None,
    append_eos: bool = False,
    chunk_rows: int = DEFAULTS.chunk_rows,
    ray: RayConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ScaledEmbedReport:
    """:func:`pairsift.compute.embed.embed` on a Ray cluster: the same set, rows and report fields."""
    model, name = embed_target(store, model, target, name)
    spec = JobSpec("embed", model, dtype=dtype, batch_tokens=batch_tokens, max_length=max_length, target=target,
                   pooling=pooling, append_eos=append_eos)
    return _run(store, spec, name, device, chunk_rows, ray, progress)


def score_logprobs_ray(
    store: Store,
    model: str,
    name: str | None = None,
    device: str | None = DEFAULTS.device,
    dtype: str | None = DEFAULTS.dtype,
    max_length: int | None = None,
    batch_tokens: int | None = DEFAULTS.batch_tokens,
    chat_template: bool | None = None,
    chunk_rows: int = DEFAULTS.chunk_rows,
    ray: RayConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ScaledLogprobsReport:
    """:func:`pairsift.compute.score.score_logprobs` on a Ray cluster."""
    from ..score import has_messages

    name = sets.check_name(name or default_set_name(model))
    store.table("responses"), store.table("prompts")
    spec = JobSpec("logprobs", model, dtype=dtype, batch_tokens=batch_tokens, max_length=max_length,
                   chat_template=chat_template, has_messages=has_messages(store))
    return _run(store, spec, name, device, chunk_rows, ray, progress)


def score_rewards_ray(
    store: Store,
    model: str,
    name: str | None = None,
    device: str | None = DEFAULTS.device,
    dtype: str | None = DEFAULTS.dtype,
    max_length: int | None = None,
    batch_tokens: int | None = DEFAULTS.batch_tokens,
    chat_template: bool | None = None,
    label: int = 0,
    chunk_rows: int = DEFAULTS.chunk_rows,
    ray: RayConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ScaledRewardsReport:
    """:func:`pairsift.compute.score.score_rewards` on a Ray cluster."""
    from ..score import has_messages

    name = sets.check_name(name or default_set_name(model))
    store.table("responses"), store.table("prompts")
    spec = JobSpec("reward", model, dtype=dtype, batch_tokens=batch_tokens, max_length=max_length,
                   chat_template=chat_template, has_messages=has_messages(store), label=label)
    return _run(store, spec, name, device, chunk_rows, ray, progress)


# ---- the driver ----------------------------------------------------------------------------------


class _ModelActor:
    """One worker of the actor pool: holds the model; streams a shard of the input into fragments."""

    def __init__(self, spec: JobSpec, prompts: list, threads: int | None):
        import ray

        try:
            self.worker = spec.build(ray.get(prompts[0]) if prompts[0] is not None else None, threads)
            self.error = None
        except Exception as e:  # noqa: BLE001 - re-raised by info(), where the driver sees its type
            self.error = e

    def info(self) -> dict:
        """The set's provenance and schema (the first actor's answer is the job's check)."""
        if self.error is not None:
            raise self.error
        return self.worker.info()

    def run(self, shard, out_uri: str, out_schema, output_key: str, input_key: str, done: list, batch_rows: int):
        """Yield, per batch of the shard, its fragment (written here, not committed) and counts."""
        import pyarrow as pa
        import ray

        from ...store.ids import id_keys
        from .cluster import worker_storage_options
        from .commit import write_staged

        if self.error is not None:
            raise self.error
        done = ray.get(done[0])  # a zero-copy view of the driver's sorted keys
        storage_options = worker_storage_options()
        for batch in shard.iter_batches(batch_size=batch_rows, batch_format="pyarrow"):
            if len(done) and batch.num_rows:
                keys = id_keys(batch.column(input_key))
                pos = np.minimum(np.searchsorted(done, keys), len(done) - 1)
                batch = batch.filter(pa.array(done[pos] != keys))
            rows, counts = self.worker.run(batch)
            staged = write_staged(rows, out_uri, output_key, out_schema, storage_options)
            yield staged.to_wire(), batch.num_rows, counts


def _run(store: Store, spec: JobSpec, name: str, device: str | None, chunk_rows: int,
         config: RayConfig | None, progress: Callable[[int, int], None] | None) -> Any:
    started = time.perf_counter()
    ray = require_ray()
    config = config or RayConfig()
    conn = connect(config, store.storage_options)
    place = place_models(config, device)
    spec = spec.on(place.device)
    table_name = f"{PREFIX[spec.kind]}_{name}"
    cls = REPORTS[spec.kind]
    common = {"workers": place.workers, "device": place.device, "threads_per_worker": place.threads,
              "startup_seconds": round(conn.seconds, 3), "cluster": conn.address}
    if spec.kind == "embed":
        common["target"] = spec.target
    done_already = nothing_left(store, spec, name, place.device)
    if done_already is not None:  # nothing to compute: no actor is started, no weight loaded
        stored, rows = done_already
        extra = {k: stored.get(k) for k in ("chat_template", "max_length") if k in cls.__dataclass_fields__}
        return cls(table=table_name, model=stored.get("model"), rows_total=rows, already_done=rows,
                   model_loaded=False, provenance=stored, seconds=round(time.perf_counter() - started, 3),
                   **common, **extra)
    remote = {**place.remote_args(), **({"runtime_env": conn.task_env} if conn.task_env else {})}
    prompts = [ray.put(prompts_table(store)) if spec.needs_prompts else None]
    # The actors start loading the model at once; the first one's answer is the job's check of
    # the set (before any row is computed), so no extra process loads the model for it.
    actor = ray.remote(_ModelActor).options(**remote)
    actors = [actor.remote(spec, prompts, place.threads) for _ in range(place.workers)]
    try:
        t_load = time.perf_counter()
        try:
            info = ray.get(actors[0].info.remote())
        except Exception as e:  # noqa: BLE001 - Ray wraps the worker's error; a PairsiftError stays one line
            _reraise(e)
        table = sets.open_set(store, table_name, info["schema"])
        committer = FragmentCommitter(store.table_uri(table_name), spec.output_key, store.storage_options)
        done = committer.done_keys()
        source = store.dataset(spec.input_table)
        total, already = _pending(source, spec.input_key, done)
        prov = info["provenance"]
        extra = {}
        if "chat_template" in cls.__dataclass_fields__:
            extra = {"chat_template": info.get("chat_template"), "max_length": int(info["max_length"])}
        report = cls(table=table_name, model=prov.get("model"), rows_total=total + already, already_done=already,
                     provenance=prov, model_load_seconds=round(time.perf_counter() - t_load, 3), **common, **extra)
        if total:
            _stream(store, spec, table, committer, actors, source.version, done, config, chunk_rows, progress,
                    total, report, started)
    finally:
        for a in actors:
            ray.kill(a)
    report.commits = committer.commits
    report.commit_seconds = round(committer.commit_seconds, 3)
    report.duplicates_removed = committer.repaired + committer.duplicates
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _pending(source, key: str, done: np.ndarray) -> tuple[int, int]:
    """(rows still to compute, rows already in the set) of the input table."""
    from ...store.ids import id_keys

    total = already = 0
    for batch in source.to_batches(columns=[key], batch_size=1 << 20):
        keys = id_keys(batch.column(0))
        if len(done):
            pos = np.minimum(np.searchsorted(done, keys), len(done) - 1)
            hit = int((done[pos] == keys).sum())
        else:
            hit = 0
        already += hit
        total += len(keys) - hit
    return total, already


def _stream(store: Store, spec: JobSpec, table: Any, committer: FragmentCommitter, actors: list, version: int,
            done: np.ndarray, config: RayConfig, chunk_rows: int, progress: Callable[[int, int], None] | None,
            total: int, report: Any, started: float) -> None:
    ray = require_ray()  # with ray.data
    # Ray Data reads the input at the pinned version, only the job's columns; each actor pulls
    # blocks from its own split as it is ready for more (no shuffle, no driver in the data path).
    ds = ray.data.read_lance(
        store.table_uri(spec.input_table), version=version, columns=spec.input_columns,
        storage_options=store.storage_options,
    )
    shards = ds.streaming_split(len(actors), equal=False)
    done_ref = [ray.put(done)]
    live = [
        a.run.options(num_returns="streaming").remote(shard, store.table_uri(table.name), table.schema,
                                                      spec.output_key, spec.input_key, done_ref, config.batch_rows)
        for a, shard in zip(actors, shards)
    ]
    counted = [k for k in ("blank", "truncated", "empty", "prompt_too_long") if hasattr(report, k)]
    pending: list[Staged] = []
    pending_rows = seen = 0
    try:
        while live:
            ready, _ = ray.wait(live, num_returns=1)
            try:
                wire, n, counts = ray.get(next(ready[0]))
            except StopIteration:
                live.remove(ready[0])
                continue
            if report.first_result_seconds is None:
                report.first_result_seconds = round(time.perf_counter() - started, 3)
            staged = Staged.from_wire(*wire)
            if staged.rows:
                pending.append(staged)
                pending_rows += staged.rows
            for k in counted:
                setattr(report, k, getattr(report, k) + int(counts.get(k, 0)))
            report.tokens += int(counts["tokens"])
            report.padded_tokens += int(counts.get("padded_tokens", 0))
            report.compute_seconds += counts["compute_seconds"]
            seen += n
            if pending_rows >= chunk_rows:
                report.written += committer.commit(pending)
                pending, pending_rows = [], 0
            if progress:
                progress(min(seen, total), total)
    except PairsiftError:
        raise
    except Exception as e:  # noqa: BLE001 - Ray wraps the worker's error; a PairsiftError stays one line
        _reraise(e)
    report.written += committer.commit(pending)
    report.compute_seconds = round(report.compute_seconds, 3)


def _reraise(error: BaseException):
    cause = root_cause(error)
    if isinstance(cause, PairsiftError):
        raise cause from None
    raise error
