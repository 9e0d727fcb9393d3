"""Reports of distributed runs: the single-process report of the job, plus where and how it ran.

``ScaledEmbedReport`` is an :class:`~pairsift.compute.embed.EmbedReport` (same fields, same
summary) with the executor's fields after them, and likewise for log-probs and rewards, so code
and JSON consumers written for one process read a distributed report unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..embed import EmbedReport
from ..score import LogprobsReport, RewardsReport


@dataclass
class ScaleOut:
    """Where a distributed run ran, and what its fixed costs were."""

    executor: str = "ray"  # "ray" or "torch.distributed"
    workers: int = 1  # model actors, or ranks
    device: str = "cpu"  # each worker's device
    threads_per_worker: int | None = None  # torch threads of a CPU worker
    commits: int = 0  # Append commits (one per chunk of rows)
    commit_seconds: float = 0.0  # the driver's time in commits (Append, catch-up read, any Delete)
    duplicates_removed: int = 0  # rows another writer had first, or a crash left twice
    startup_seconds: float = 0.0  # joining or starting the Ray cluster
    model_load_seconds: float = 0.0  # until the first worker held the model
    first_result_seconds: float | None = None  # until the first batch was back
    compute_seconds: float = 0.0  # the workers' time in tokenise + forward, summed
    cluster: str | None = None  # the Ray cluster's address

    def summary(self) -> str:
        base = super().summary()  # type: ignore[misc]  # the job's own report, next in the MRO
        if not getattr(self, "model_loaded", True):
            return base
        threads = f", {self.threads_per_worker} thread(s) each" if self.threads_per_worker else ""
        first = f", first batch back at {self.first_result_seconds:.1f}s" if self.first_result_seconds else ""
        start = f"cluster start-up {self.startup_seconds:.1f}s, " if self.startup_seconds else ""
        return (f"{base}\non {self.executor}: {self.workers} worker(s) on {self.device}{threads}; "
                f"{self.commits:,} commit(s) ({self.commit_seconds:.1f}s); {start}"
                f"model loaded in {self.model_load_seconds:.1f}s{first}")


@dataclass
class ScaledEmbedReport(ScaleOut, EmbedReport):
    """What a distributed `embed` did."""


@dataclass
class ScaledLogprobsReport(ScaleOut, LogprobsReport):
    """What a distributed `score logprobs` did."""


@dataclass
class ScaledRewardsReport(ScaleOut, RewardsReport):
    """What a distributed `score reward` did."""


REPORTS = {"embed": ScaledEmbedReport, "logprobs": ScaledLogprobsReport, "reward": ScaledRewardsReport}
