"""Joining (or starting) a Ray cluster, and placing model workers and tasks on it.

**Where the cluster comes from**: ``RayConfig.address`` (``--ray-address``), else ``$RAY_ADDRESS``
(as Ray itself does), else a local cluster on this machine's cores. A Ray session that the
caller already started in this process is used as it is. A local cluster lives until the process
exits, so a library user pays its start-up once for several jobs.

**Storage credentials reach the workers as environment variables of the job** (Ray's
``runtime_env``, set once when this module connects), never as arguments of every task: the
object-store variables of the driver's environment (:data:`FORWARDED_ENV`, e.g.
``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, ``AWS_ALLOW_HTTP``) are forwarded, and explicit
``--storage-option`` values travel as one JSON variable (:data:`STORAGE_OPTIONS_ENV`) that the
workers read back with :func:`worker_storage_options`. Ray Data's own read tasks are the one
exception: they are given the explicit storage options, if any, as an argument.

**Resources**: on a GPU cluster each model actor holds one whole GPU (``num_gpus=1``); on CPU each
actor asks Ray for a *fraction* of a CPU (scheduling only: whole CPUs for the actors starve
Ray Data's read tasks on a small cluster and the job hangs without an error) and runs
``threads`` torch threads, so the workers together use the cluster's cores.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from dataclasses import dataclass, field

from ...errors import MissingDependency, UsageError

#: Environment variables forwarded to the workers when this module connects (object-store
#: credentials and endpoints, Lance's log level). Nothing else of the driver's environment is.
FORWARDED_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT",
    "AWS_ENDPOINT_URL",
    "AWS_ALLOW_HTTP",
    "AWS_PROFILE",
    "AWS_S3_EXPRESS",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_SERVICE_ACCOUNT",
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "LANCE_LOG",
)

#: JSON object of the store's explicit storage options, for the workers (see module docstring).
STORAGE_OPTIONS_ENV = "PAIRSIFT_STORAGE_OPTIONS"

#: Rows per Ray Data batch handed to a model actor; each batch becomes one Lance fragment.
BATCH_ROWS = 4096
#: CPUs Ray reserves per CPU model actor (a fraction: see the module docstring).
CPU_ACTOR_CPUS = 0.5
#: CPUs Ray reserves per GPU model actor (tokenisation and the fragment write run there).
GPU_ACTOR_CPUS = 1.0

INSTALL = "Ray is needed for --executor ray: pip install 'pairsift[distributed]'"


@dataclass(frozen=True)
class RayConfig:
    """How a job runs on Ray (field name = option name where the CLI has one)."""

    address: str | None = field(default=None, metadata={
        "help": "Ray cluster to join (host:6379 or ray://host:10001); default: $RAY_ADDRESS, else a local "
                "cluster on this machine's cores."})
    workers: int | None = field(default=None, metadata={
        "help": "Ray workers: model actors (default: one per GPU, else 1 using every core) or pair-feature "
                "tasks (default: one per CPU)."})
    #: Rows per actor call, which is also the rows of each fragment it writes.
    batch_rows: int = BATCH_ROWS
    #: CPUs Ray reserves per worker (None: 0.5 for CPU actors, 1 for GPU actors and pair tasks).
    cpus_per_worker: float | None = None
    #: torch threads per CPU model actor (None: the cluster's CPUs divided among the actors).
    threads_per_worker: int | None = None
    #: CPUs of a local cluster started here (None: all cores). Ignored when joining a cluster.
    num_cpus: int | None = None

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise UsageError(f"--workers {self.workers}: give at least 1")
        if self.batch_rows < 1:
            raise UsageError(f"batch_rows {self.batch_rows}: give at least 1")


def require_ray():
    """Import ray (and Ray Data), or say the install line."""
    try:
        import ray
        import ray.data  # the extra is ray[data]
    except ImportError as e:
        raise MissingDependency(INSTALL) from e
    return ray


def worker_env(storage_options: dict | None) -> dict[str, str]:
    """The environment variables the job's workers get (credentials, endpoints, explicit options)."""
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    if storage_options:
        env[STORAGE_OPTIONS_ENV] = json.dumps(storage_options, sort_keys=True)
    return env


def worker_storage_options() -> dict | None:
    """On a worker: the store's explicit storage options, as the driver had them (or None)."""
    raw = os.environ.get(STORAGE_OPTIONS_ENV)
    return json.loads(raw) if raw else None


@dataclass
class Connection:
    """The Ray session a job runs in."""

    started: bool  # this call started or joined it (False: the caller's own session)
    seconds: float  # time spent connecting (a local cluster's start-up cost)
    address: str
    #: runtime_env to pass per actor/task: only when joining the caller's session with explicit
    #: storage options (a session we start carries them at job level).
    task_env: dict | None = None


def connect(config: RayConfig | None, storage_options: dict | None = None) -> Connection:
    """Join the configured cluster or start a local one (no-op when Ray is already initialised)."""
    ray = require_ray()
    config = config or RayConfig()
    t0 = time.perf_counter()
    env = worker_env(storage_options)
    _quiet_ray_data()
    if ray.is_initialized():
        task_env = {"env_vars": env} if storage_options else None
        return Connection(False, 0.0, ray.get_runtime_context().gcs_address, task_env)
    address = config.address or os.environ.get("RAY_ADDRESS") or None
    # Worker logs stay in Ray's log folder; errors still reach the driver as exceptions.
    kwargs = {"runtime_env": {"env_vars": env}, "logging_level": logging.WARNING, "log_to_driver": False}
    try:
        with warnings.catch_warnings():
            # Ray starts its processes with fork+exec, which lancedb's fork hook warns about needlessly.
            warnings.filterwarnings("ignore", message="lancedb fork support")
            warnings.filterwarnings("ignore", message="lance is not fork-safe")
            if address:
                ray.init(address=address, **kwargs)
            else:
                ray.init(num_cpus=config.num_cpus, include_dashboard=False, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise UsageError(f"--ray-address: cannot connect to {where} ({e})") from e
    return Connection(True, time.perf_counter() - t0, ray.get_runtime_context().gcs_address)


def _quiet_ray_data() -> None:
    """Ray Data logs a progress table every few seconds; the CLI draws its own bar."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    for attr in ("enable_operator_progress_bars", "print_on_execution_start"):
        if hasattr(ctx, attr):
            setattr(ctx, attr, False)
    logging.getLogger("ray.data").setLevel(logging.ERROR)


@dataclass(frozen=True)
class Placement:
    """Where each worker runs: its Ray resources, torch threads and device."""

    workers: int
    num_cpus: float
    num_gpus: float
    threads: int | None  # torch intra-op threads (CPU actors); None: torch's default
    device: str  # "cuda" (the actor's own GPU) or "cpu"

    def remote_args(self) -> dict:
        args = {"num_cpus": self.num_cpus}
        if self.num_gpus:
            args["num_gpus"] = self.num_gpus
        return args


def _resources() -> tuple[float, float]:
    ray = require_ray()
    res = ray.cluster_resources()
    return float(res.get("CPU", 0.0)), float(res.get("GPU", 0.0))


def place_models(config: RayConfig, device: str | None) -> Placement:
    """Model actors: one GPU each on a GPU cluster, else fractional CPUs and explicit threads.

    ``--device auto`` uses GPUs when the cluster has any; ``cuda`` requires them; ``cpu`` never
    uses them. On Ray every actor sees its own GPU as ``cuda``, so a device index is ignored.
    """
    from ..device import check_device

    device = check_device(device)
    cpus, gpus = _resources()
    use_gpu = device.startswith("cuda") or (device == "auto" and gpus >= 1)
    if use_gpu:
        if gpus < 1:
            raise UsageError(f"--device {device}: the Ray cluster has no GPU; use --device cpu")
        workers = config.workers or int(gpus)
        if workers > gpus:
            raise UsageError(f"--workers {workers}: the Ray cluster has {int(gpus)} GPU(s), one per worker")
        per = config.cpus_per_worker if config.cpus_per_worker is not None else GPU_ACTOR_CPUS
        return Placement(workers, per, 1.0, config.threads_per_worker, "cuda")
    workers = config.workers or 1
    per = config.cpus_per_worker if config.cpus_per_worker is not None else CPU_ACTOR_CPUS
    if workers * per > cpus:
        raise UsageError(
            f"--workers {workers}: {workers} x {per} CPU does not fit the cluster's {cpus:g} CPUs"
        )
    threads = config.threads_per_worker or max(1, int(cpus // workers))
    return Placement(workers, per, 0.0, threads, "cpu")


def place_tasks(config: RayConfig) -> Placement:
    """CPU tasks (pair features): one CPU each, as many at once as the cluster has CPUs."""
    cpus, _ = _resources()
    per = config.cpus_per_worker if config.cpus_per_worker is not None else 1.0
    workers = config.workers or max(1, int(cpus // per))
    return Placement(workers, per, 0.0, None, "cpu")


def root_cause(error: BaseException) -> BaseException:
    """The exception a worker raised, out of Ray's wrappers (so a PairsiftError stays one line)."""
    seen = set()
    while id(error) not in seen:
        seen.add(id(error))
        cause = getattr(error, "cause", None) or error.__cause__
        if cause is None or not isinstance(cause, BaseException):
            break
        error = cause
    return error
