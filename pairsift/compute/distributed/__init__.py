"""Scale-out executors for the compute jobs: a Ray cluster, or torchrun / accelerate ranks on one node.

Same jobs, same tables, same numbers as the single-process path; only where the work runs changes.

- :mod:`.cluster`: joining or starting a Ray cluster, storage settings for the workers, resources.
- :mod:`.commit`: the one commit primitive of every distributed write: workers write Lance
  fragments, the driver appends them at a pinned read version and keeps each key once.
- :mod:`.workers`: the model side (embed / log-probs / rewards of a batch of rows), built from
  the single-process forwards, tokenisation and row layouts; used by Ray actors and by ranks.
- :mod:`.ray_jobs`: ``embed_ray``, ``score_logprobs_ray``, ``score_rewards_ray`` (Ray Data read, an
  actor pool holding the model, one commit per chunk).
- :mod:`.ranks`: the same jobs when launched by ``torchrun`` / ``accelerate launch``.

Nothing here is imported by ``pairsift`` itself unless a distributed executor is asked for: Ray is
the optional extra ``pairsift[distributed]``.
"""

from __future__ import annotations

#: `--executor` values: this process (or one rank of torchrun / accelerate launch), or Ray.
EXECUTORS = ("local", "ray")

#: Job kind -> (this process, Ray, one torchrun/accelerate rank), as "module:function".
_JOBS = {
    "embed": ("pairsift.compute.embed:embed", "pairsift.compute.distributed.ray_jobs:embed_ray",
              "pairsift.compute.distributed.ranks:embed_ranks"),
    "logprobs": ("pairsift.compute.score:score_logprobs", "pairsift.compute.distributed.ray_jobs:score_logprobs_ray",
                 "pairsift.compute.distributed.ranks:score_logprobs_ranks"),
    "reward": ("pairsift.compute.score:score_rewards", "pairsift.compute.distributed.ray_jobs:score_rewards_ray",
               "pairsift.compute.distributed.ranks:score_rewards_ranks"),
}


def compute_job(kind: str, executor: str = "local", ray=None):
    """The function that runs job `kind` ("embed", "logprobs", "reward") on `executor`.

    ``local`` is this process, or this rank's share when the process is one of several ranks
    (``WORLD_SIZE`` > 1: torchrun, accelerate launch). ``ray`` binds `ray` (a
    :class:`.cluster.RayConfig`). Every returned function takes the local function's arguments.
    """
    import functools
    from importlib import import_module

    from ...errors import UsageError
    from .ranks import launched

    if executor not in EXECUTORS:
        raise UsageError(f"--executor {executor!r}: use one of {', '.join(EXECUTORS)}")
    local, on_ray, on_ranks = _JOBS[kind]
    if executor == "ray" and launched():
        raise UsageError("--executor ray under torchrun/accelerate launch: start the command once, without a launcher")
    target = on_ray if executor == "ray" else (on_ranks if launched() else local)
    module, name = target.split(":")
    fn = getattr(import_module(module), name)
    return functools.partial(fn, ray=ray) if executor == "ray" else fn
