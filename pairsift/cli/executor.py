"""`--executor`, `--ray-address`, `--workers`: where `embed`, `score` and `pairs` run (one decorator).

``local`` (default) is this process — or, when launched by ``torchrun`` / ``accelerate launch``,
this rank's share of the job; ``ray`` runs the job on a Ray cluster (``pip install
'pairsift[distributed]'``). See :mod:`pairsift.compute.distributed`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from ..compute.distributed import EXECUTORS
from ..errors import UsageError
from .options import F, config_option

if TYPE_CHECKING:
    from ..compute.distributed.cluster import RayConfig


@dataclass(frozen=True)
class Executor:
    """The parsed executor options of one command."""

    name: str = "local"
    address: str | None = None
    workers: int | None = None

    def ray_config(self) -> RayConfig:
        from ..compute.distributed.cluster import RayConfig

        return RayConfig(address=self.address, workers=self.workers)

    def compute(self, kind: str) -> Callable[..., Any]:
        """The library function for job `kind` ("embed", "logprobs", "reward") on this executor."""
        from ..compute.distributed import compute_job

        return compute_job(kind, self.name, self.ray_config() if self.name == "ray" else None)

    def run(self, run_job: Callable[..., Any], kind: str, desc: str, as_json: bool, **kwargs: Any) -> None:
        """Run job `kind` through `run_job` (progress + report); only rank 0 prints under a launcher."""
        from ..compute.distributed.ranks import launched, rank

        fn = self.compute(kind)
        if launched() and rank() != 0:
            fn(**kwargs)
            return
        run_job(fn, desc, as_json, **kwargs)

    def pairs(self) -> Callable[..., Any]:
        """`build_pairs`, or its Ray version with this executor's cluster bound."""
        if self.name == "ray":
            from ..features.ray_pairs import build_pairs_ray

            return functools.partial(build_pairs_ray, ray=self.ray_config())
        from ..features.pairs import build_pairs

        return build_pairs


def executor_options(f: F) -> F:
    """Add --executor / --ray-address / --workers; the command receives `executor` (an Executor).

    The Ray options' help and defaults come from :class:`~pairsift.compute.distributed.cluster.RayConfig`.
    """
    from ..compute.distributed.cluster import RayConfig

    @click.option("--executor", type=click.Choice(EXECUTORS), default=EXECUTORS[0], show_default=True,
                  help="local: this process (one rank's share under torchrun/accelerate launch); "
                       "ray: a Ray cluster (pip install 'pairsift[distributed]').")
    @config_option(RayConfig, "address", "--ray-address", metavar="ADDRESS")
    @config_option(RayConfig, "workers", type=click.IntRange(min=1))
    @functools.wraps(f)
    def wrapper(*args: Any, executor: str, address: str | None, workers: int | None, **kwargs: Any) -> Any:
        if executor != "ray" and (address or workers):
            raise UsageError("--ray-address and --workers need --executor ray")
        return f(*args, executor=Executor(executor, address, workers), **kwargs)

    return wrapper  # type: ignore[return-value]
