"""``embed``, ``score logprobs`` and ``score reward`` on a Ray cluster (``--executor ray``).

How a job runs:

1. The driver joins or starts the cluster (:func:`.cluster.connect`) and asks one worker to load
   the model and report the set's provenance and schema (a *probe*, on the same resources as the
   actors), so a set that does not match is refused before any work, exactly as in one process.
2. It creates or checks the set (:func:`pairsift.compute.sets.open_set`), reads the keys already
   in it (:class:`.commit.FragmentCommitter`, which also repairs duplicates a crash left), and
   pins the input table's version.
3. Ray Data reads the input table at that version, only the columns the job needs
   (``read_lance(columns=...)``: projection in Lance; the "not done yet" test is an anti-join with
   the output table, which is no Lance filter, so each actor drops done rows itself against the
   sorted done keys, shared zero-copy through the object store).
4. An actor pool holds the model (``num_gpus=1`` per actor on GPUs, a fraction of a CPU on CPU
   machines: see :mod:`.cluster`); each batch becomes one Lance fragment, written by the actor,
   whose metadata and row keys come back to the driver.
5. The driver commits once per chunk (``chunk_rows`` rows or more): one Append at a pinned read
   version, duplicates removed (:mod:`.commit`). A job killed at any point (``kill -9`` of the
   driver included) resumes with no duplicate and no lost row: what was committed is skipped,
   what was not is invisible (orphan data files, removed by ``optimize``).

The report has the keys of the single-process report plus ``executor``, ``workers``,
``commits``, ``startup_seconds`` (joining/starting the cluster), ``probe_seconds`` and
``first_result_seconds`` (model loads and the first batch: the fixed cost of a job).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from ...errors import PairsiftError, UsageError
from .. import sets
from ..models import MINILM, default_set_name
from .cluster import (
    Placement,
    RayConfig,
    connect,
    place_models,
    require_ray,
    root_cause,
)
from .commit import FragmentCommitter, Staged
from .workers import JobSpec, prompts_table


def embed_ray(
    store,
    model: str | None = None,
    target: str = "responses",
    name: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    max_length: int | None = None,
    batch_tokens: int | None = None,
    pooling: str | None = None,
    append_eos: bool = False,
    chunk_rows: int = 4096,
    ray: RayConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """:func:`pairsift.compute.embed.embed` on a Ray cluster: same set, same rows, same report keys."""
    if target not in ("responses", "prompts"):
        raise UsageError(f"--target {target!r}: use 'responses' or 'prompts'")
    if model is None:
        if target == "responses":
            raise UsageError("--model is required for response embeddings (e.g. microsoft/phi-1_5)")
        model = MINILM
    if name is None:
        base = default_set_name(model)
        name = f"prompt_{base}" if target == "prompts" else base
    sets.check_name(name)
    store.table(target)
    spec = JobSpec("embed", model, dtype=dtype, batch_tokens=batch_tokens, max_length=max_length, target=target,
                   pooling=pooling, append_eos=append_eos)
    report = {"target": target, "blank": 0, "truncated": 0}
    return _run(store, spec, f"embeddings_{name}", "--name", device, chunk_rows, ray, progress, report)


def score_logprobs_ray(
    store,
    model: str,
    name: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    max_length: int = 1024,
    batch_tokens: int | None = None,
    chat_template: bool | None = None,
    chunk_rows: int = 4096,
    ray: RayConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """:func:`pairsift.compute.score.score_logprobs` on a Ray cluster."""
    from ..score import has_messages

    name = sets.check_name(name or default_set_name(model), "--as")
    store.table("responses"), store.table("prompts")
    spec = JobSpec("logprobs", model, dtype=dtype, batch_tokens=batch_tokens, max_length=max_length,
                   chat_template=chat_template, has_messages=has_messages(store))
    report = {"empty": 0, "truncated": 0, "prompt_too_long": 0}
    return _run(store, spec, f"logprobs_{name}", "--as", device, chunk_rows, ray, progress, report)


def score_rewards_ray(
    store,
    model: str,
    name: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    max_length: int | None = None,
    batch_tokens: int | None = None,
    chat_template: bool | None = None,
    label: int = 0,
    chunk_rows: int = 4096,
    ray: RayConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """:func:`pairsift.compute.score.score_rewards` on a Ray cluster."""
    from ..score import has_messages

    name = sets.check_name(name or default_set_name(model), "--as")
    store.table("responses"), store.table("prompts")
    spec = JobSpec("reward", model, dtype=dtype, batch_tokens=batch_tokens, max_length=max_length,
                   chat_template=chat_template, has_messages=has_messages(store), label=label)
    report = {"truncated": 0}
    return _run(store, spec, f"rewards_{name}", "--as", device, chunk_rows, ray, progress, report)


# ---- the driver ----------------------------------------------------------------------------------


def _probe(spec: JobSpec, prompts, threads: int | None) -> dict:
    """Runs on a worker: load the model once and report the set's provenance and schema."""
    import ray

    if prompts is not None:
        prompts = ray.get(prompts[0])
    return spec.build(prompts, threads).info()


class _ModelActor:
    """A Ray Data actor: holds the model, turns a batch of input rows into one committed-later fragment."""

    def __init__(self, spec: JobSpec, out_uri: str, out_schema, refs: list, threads: int | None):
        import ray

        from .cluster import worker_storage_options

        done, prompts = ray.get(refs[0]), (ray.get(refs[1]) if refs[1] is not None else None)
        self.worker = spec.build(prompts, threads)
        self.spec, self.uri, self.schema, self.done = spec, out_uri, out_schema, done
        self.storage_options = worker_storage_options()

    def __call__(self, batch):
        import pyarrow as pa

        from ...store.ids import id_keys
        from .commit import write_staged

        if len(self.done) and batch.num_rows:
            keys = id_keys(batch.column(self.spec.input_key))
            pos = np.minimum(np.searchsorted(self.done, keys), len(self.done) - 1)
            batch = batch.filter(pa.array(self.done[pos] != keys))
        rows, counts = self.worker.run(batch)
        staged = write_staged(rows, self.uri, self.spec.output_key, self.schema, self.storage_options)
        fragments, keys = staged.to_wire()
        out = {"fragments": [fragments], "keys": pa.array([keys], pa.binary()), "input_rows": [batch.num_rows]}
        out.update({k: [v] for k, v in counts.items()})
        return pa.table(out)


def _run(store, spec: JobSpec, table_name: str, option: str, device: str | None, chunk_rows: int,
         config: RayConfig | None, progress, report: dict) -> dict:
    started = time.perf_counter()
    ray = require_ray()
    config = config or RayConfig()
    conn = connect(config, store.storage_options)
    place = place_models(config, device)
    spec = spec.on(place.device)
    remote = {**place.remote_args(), **({"runtime_env": conn.task_env} if conn.task_env else {})}

    prompts_ref = ray.put(prompts_table(store)) if spec.needs_prompts else None
    t_probe = time.perf_counter()
    try:
        info = ray.get(ray.remote(_probe).options(**remote).remote(spec, [prompts_ref] if prompts_ref else None,
                                                                  place.threads))
    except Exception as e:  # noqa: BLE001 - Ray wraps the worker's error; a PairsiftError stays one line
        _reraise(e)
    probe_seconds = time.perf_counter() - t_probe
    table = sets.open_set(store, table_name, info["schema"], option)
    committer = FragmentCommitter(store.table_uri(table_name), spec.output_key, store.storage_options)
    done = committer.done_keys()
    source = store.dataset(spec.input_table)
    total, already = _pending(source, spec.input_key, done)
    prov = info["provenance"]
    report = {
        "table": table_name, "model": prov.get("model"), "rows_total": total + already, "already_done": already,
        "written": 0, **report, "tokens": 0, "provenance": prov,
        **({"chat_template": info["chat_template"]} if "chat_template" in info else {}),
        "executor": "ray", "workers": place.workers, "device": place.device, "threads_per_worker": place.threads,
        "commits": 0, "duplicates_removed": committer.repaired, "startup_seconds": round(conn.seconds, 3),
        "probe_seconds": round(probe_seconds, 3), "cluster": conn.address,
    }
    if total:
        _stream(store, spec, table, committer, place, remote, source.version, done, prompts_ref, config,
                chunk_rows, progress, total, report, started)
    report["commits"] = committer.commits
    report["duplicates_removed"] = committer.repaired + committer.duplicates
    report["seconds"] = round(time.perf_counter() - started, 3)
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


def _stream(store, spec, table, committer, place: Placement, remote: dict, version: int, done, prompts_ref,
            config: RayConfig, chunk_rows: int, progress, total: int, report: dict, started: float) -> None:
    ray = require_ray()  # with ray.data
    refs = [ray.put(done), prompts_ref]
    ds = ray.data.read_lance(
        store.table_uri(spec.input_table), version=version, columns=spec.input_columns,
        storage_options=store.storage_options,
    )
    # Blocks of one batch each: an actor task then covers one batch, and its fragment reaches the
    # driver (and its commit) as soon as it is written, not when a whole input file is done.
    # A streaming split/merge of blocks, not a shuffle.
    ds = ds.repartition(target_num_rows_per_block=config.batch_rows)
    out = ds.map_batches(
        _ModelActor,
        fn_constructor_kwargs={"spec": spec, "out_uri": store.table_uri(table.name), "out_schema": table.schema,
                               "refs": refs, "threads": place.threads},
        batch_size=config.batch_rows,
        batch_format="pyarrow",
        zero_copy_batch=True,
        compute=ray.data.ActorPoolStrategy(size=place.workers),
        **remote,
    )
    counted = [k for k in report if k in ("blank", "truncated", "empty", "prompt_too_long")] + ["tokens"]
    pending: list[Staged] = []
    pending_rows = seen = 0
    try:
        for batch in out.iter_batches(batch_size=None, batch_format="pyarrow"):
            if "first_result_seconds" not in report:
                report["first_result_seconds"] = round(time.perf_counter() - started, 3)
            cols = batch.to_pydict()
            for i in range(batch.num_rows):
                staged = Staged.from_wire(cols["fragments"][i], cols["keys"][i])
                if staged.rows:
                    pending.append(staged)
                    pending_rows += staged.rows
                for k in counted:
                    report[k] += int(cols[k][i])
                report["compute_seconds"] = report.get("compute_seconds", 0.0) + float(cols["compute_seconds"][i])
                seen += int(cols["input_rows"][i])
            if pending_rows >= chunk_rows:
                report["written"] += committer.commit(pending)
                pending, pending_rows = [], 0
            if progress:
                progress(min(seen, total), total)
    except PairsiftError:
        raise
    except Exception as e:  # noqa: BLE001 - Ray wraps the worker's error; a PairsiftError stays one line
        _reraise(e)
    report["written"] += committer.commit(pending)
    report["compute_seconds"] = round(report.get("compute_seconds", 0.0), 3)


def _reraise(error: BaseException):
    cause = root_cause(error)
    if isinstance(cause, PairsiftError):
        raise cause from None
    raise error
