"""What `compare` trains on each arm's pairs and how it scores the held-out pairs.

``reward-head`` (CPU, seconds): a Bradley–Terry linear reward ``r(y) = w·e(y)`` on a stored
response-embedding set. With ``d = e(chosen) - e(rejected)``, ``P(chosen > rejected) = σ(w·d)``;
it is fitted by scikit-learn's LogisticRegression on both orientations (``d -> 1``, ``-d -> 0``)
without an intercept (a preference has no side bias to learn), L2 strength ``C``. Held-out:
``accuracy`` = share of pairs with ``w·d > 0`` and ``log_loss`` = mean ``-log σ(w·d)``.

``dpo``: the product's own `pairsift train` (any loss it supports) on each arm's pairs, saved as
a subset for the run and deleted after (``keep_runs`` keeps subsets and models), then
`pairsift eval` on the held-out pairs (saved once as a subset): ``accuracy`` (reward accuracy),
``loss`` (DPO loss), ``margin_beta`` / ``margin_raw`` (reward margin with / without beta).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import TableNotFound, UsageError
from ..store.ids import id_keys
from ..store.schema import provenance

LEARNERS = ("reward-head", "dpo")


def response_embedding_sets(store) -> list[str]:
    """Names of the embedding sets made from responses (not prompts)."""
    out = []
    for t in store.table_names():
        if t.startswith("embeddings_"):
            prov = provenance(store.dataset(t).schema) or {}
            if prov.get("target", "responses") == "responses":
                out.append(t[len("embeddings_"):])
    return out


class Learner:
    """Interface: check inputs, prepare on the held-out pairs, then fit and evaluate per run."""

    name: str = ""
    metrics: tuple[str, ...] = ()
    #: Metrics where lower is better (the table says so; intervals are the same).
    lower_is_better: tuple[str, ...] = ()

    def check(self, store) -> dict[str, int]:
        """Fail (naming the command that makes it) when an input is missing; return tables read."""
        return {}

    def load(self, store) -> None:
        """Read what the learner needs before the budgets are drawn (read-only)."""

    def usable(self, members: pa.Table) -> np.ndarray:
        """Which pairs the learner can train or evaluate on (e.g. both responses have a vector)."""
        return np.ones(members.num_rows, dtype=bool)

    def prepare(self, store, heldout: pa.Table, versions: dict[str, int], prefix: str) -> None:
        """Called once with the held-out pairs (MEMBER_ROWS rows, oriented); `prefix` names
        anything the learner saves in the store for this comparison."""

    def run(self, store, train: pa.Table, versions: dict[str, int], run_name: str, seed: int) -> dict[str, float]:
        raise NotImplementedError

    def close(self, store) -> None:
        """Remove what prepare() wrote."""

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    def title(self) -> str:
        return self.name


# ---- reward-head ------------------------------------------------------------------------------


@dataclass
class RewardHead(Learner):
    embedding: str | None = None
    C: float = 1.0
    max_iter: int = 1000
    name: str = "reward-head"
    metrics: tuple[str, ...] = ("accuracy", "log_loss")
    lower_is_better: tuple[str, ...] = ("log_loss",)
    _keys: np.ndarray | None = field(default=None, repr=False)
    _vecs: np.ndarray | None = field(default=None, repr=False)
    _eval: np.ndarray | None = field(default=None, repr=False)
    _version: int | None = None

    def __post_init__(self):
        if not self.C > 0:
            raise UsageError(f"--reg: the L2 strength C must be > 0, got {self.C}")

    def check(self, store) -> dict[str, int]:
        sets = response_embedding_sets(store)
        if self.embedding is None:
            if len(sets) != 1:
                if not sets:
                    raise TableNotFound(
                        "the reward-head learner needs response embeddings and the store has none: "
                        "run `pairsift embed --model MODEL --name NAME` (then `pairsift pairs`)"
                    )
                raise UsageError(f"pass --embedding NAME for the reward head (response embedding sets: {', '.join(sets)})")
            self.embedding = sets[0]
        table = f"embeddings_{self.embedding}"
        if self.embedding not in sets:
            raise TableNotFound(
                f"the reward-head learner needs the embedding set '{self.embedding}' (table {table}): "
                f"run `pairsift embed --model MODEL --name {self.embedding}`"
            )
        self._version = store.table(table).version
        return {table: self._version}

    def _load(self, store) -> None:
        table = store.dataset(f"embeddings_{self.embedding}", self._version).to_table(columns=["id", "vector"])
        keys = id_keys(table.column("id"))
        vec = table.column("vector").combine_chunks()
        dim = vec.type.list_size
        flat = vec.flatten().to_numpy(zero_copy_only=False) if vec.null_count == 0 else None
        if flat is None:  # null vectors (blank responses): zero-filled, then marked unusable
            valid = vec.is_valid().to_numpy(zero_copy_only=False)
            full = np.zeros((len(vec), dim), dtype=np.float32)
            full[valid] = vec.filter(pa.array(valid)).flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
        else:
            valid = np.ones(len(vec), dtype=bool)
            full = flat.reshape(-1, dim).astype(np.float32, copy=False)
        order = np.argsort(keys, kind="stable")
        self._keys, self._vecs, self._valid = keys[order], full[order], valid[order]

    def _rows(self, ids: pa.ChunkedArray | pa.Array) -> np.ndarray:
        """Row of each response id in the vector matrix, -1 when absent or null."""
        k = id_keys(ids)
        if not len(self._keys):
            return np.full(len(k), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._keys, k), len(self._keys) - 1)
        ok = (self._keys[pos] == k) & self._valid[pos]
        return np.where(ok, pos, -1)

    def usable(self, members: pa.Table) -> np.ndarray:
        if self._keys is None:
            raise RuntimeError("prepare() first")
        return (self._rows(members.column("chosen_id")) >= 0) & (self._rows(members.column("rejected_id")) >= 0)

    def load(self, store) -> None:
        if self._keys is None:
            self._load(store)

    def diffs(self, members: pa.Table) -> np.ndarray:
        c, r = self._rows(members.column("chosen_id")), self._rows(members.column("rejected_id"))
        return self._vecs[c].astype(np.float64) - self._vecs[r].astype(np.float64)

    def prepare(self, store, heldout: pa.Table, versions: dict[str, int], prefix: str) -> None:
        self.load(store)
        self._eval = self.diffs(heldout)

    def fit(self, d: np.ndarray) -> np.ndarray:
        """w of the Bradley–Terry head fitted on preference differences `d` [n, dim]."""
        from sklearn.linear_model import LogisticRegression

        X = np.concatenate([d, -d])
        y = np.r_[np.ones(len(d)), np.zeros(len(d))]
        model = LogisticRegression(C=self.C, fit_intercept=False, max_iter=self.max_iter)
        model.fit(X, y)
        return model.coef_[0]

    def score(self, w: np.ndarray, d: np.ndarray) -> dict[str, float]:
        s = d @ w
        return {"accuracy": float(np.mean(s > 0)), "log_loss": float(np.mean(np.logaddexp(0.0, -s)))}

    def run(self, store, train, versions, run_name, seed):
        return self.score(self.fit(self.diffs(train)), self._eval)

    def title(self) -> str:
        return f"reward head on '{self.embedding}' embeddings"

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name, "embedding": self.embedding, "table_version": self._version, "C": self.C,
            "model": "sklearn LogisticRegression(fit_intercept=False, lbfgs) on e(chosen)-e(rejected) and its negation",
        }


# ---- dpo --------------------------------------------------------------------------------------


@dataclass
class DPO(Learner):
    model: str | None = None
    ref_model: str | None = None
    loss: str = "sigmoid"
    beta: float = 0.1
    learning_rate: float | None = None
    epochs: float | None = None
    batch_size: int | None = None
    max_length: int | None = None
    device: str = "auto"
    keep_runs: bool = False
    work_dir: str | None = None
    name: str = "dpo"
    metrics: tuple[str, ...] = ("accuracy", "loss", "margin_beta", "margin_raw")
    lower_is_better: tuple[str, ...] = ("loss",)
    _heldout: str | None = None
    _ref: Any = field(default=None, repr=False)
    _tok: Any = field(default=None, repr=False)
    _tmp: str | None = None

    def config(self, subset: str, output: str, seed: int):
        from ..train.config import TrainConfig

        opts = dict(model=self.model, ref_model=self.ref_model, loss=self.loss, beta=self.beta,
                    learning_rate=self.learning_rate, epochs=self.epochs, batch_size=self.batch_size,
                    max_length=self.max_length, device=self.device, seed=seed, output=output)
        return TrainConfig(subset=subset).merged(**opts).validate()

    def check(self, store) -> dict[str, int]:
        if not self.model:
            raise UsageError("the dpo learner needs --model PATH (the policy to train; also the reference by default)")
        if self.loss in ("rpo", "rpo-unpaired"):
            from ..train.config import TrainConfig

            emb = TrainConfig().prompt_embeddings
            if not store.has_table(f"embeddings_{emb}"):
                raise TableNotFound(
                    f"--loss {self.loss} needs prompt embeddings (table embeddings_{emb}): "
                    "run `pairsift embed --target prompts`"
                )
        self.config("check", "check", 0)  # every option validated before anything is written
        return {}

    def prepare(self, store, heldout, versions, prefix):
        from ..train.run import load_model, load_tokenizer

        self._tmp = self.work_dir or tempfile.mkdtemp(prefix="pairsift-compare-")
        Path(self._tmp).mkdir(parents=True, exist_ok=True)
        ref = self.ref_model or self.model
        self._tok = load_tokenizer(ref)
        self._ref = load_model(ref)
        self._heldout = f"{prefix}-heldout"
        drop_leftovers(store, prefix)
        self._save(store, heldout, self._heldout, versions, "compare-heldout")

    def _save(self, store, members: pa.Table, name: str, versions: dict[str, int], strategy: str) -> None:
        from ..store.subsets import SubsetManifest, write_subset

        members = members.set_column(members.schema.get_field_index("subset"), "subset",
                                     pa.array([name] * members.num_rows, pa.string()))
        members = members.set_column(members.schema.get_field_index("rank"), "rank",
                                     pa.array(np.arange(members.num_rows, dtype=np.int64)))
        n = members.num_rows
        counts = {"selected": n, "prompts_selected": len(pc.unique(members.column("prompt_id"))), "excluded": {}}
        manifest = SubsetManifest(
            name=name, strategy=strategy, params={}, seed=None, labelled=True, counts=counts,
            store_versions={k: v for k, v in versions.items() if k in ("pair_features", "prompts", "responses")},
            tag="", created_at=datetime.now(timezone.utc))
        write_subset(store, manifest, members, replace=True)

    def run(self, store, train, versions, run_name, seed):
        from ..select.subsets import delete_subset, subset_exists
        from ..train.evaluate import evaluate
        from ..train.run import train as run_train

        if subset_exists(store, run_name):
            delete_subset(store, run_name)
        self._save(store, train, run_name, versions, "compare-run")
        output = str(Path(self._tmp) / run_name)
        try:
            run_train(store, self.config(run_name, output, seed))
            report = evaluate(store, self._heldout, [output], self._ref, beta=self.beta, tokenizer=self._tok,
                              max_length=self.config(run_name, output, seed).max_length, device=self.device)
        finally:
            if not self.keep_runs:
                delete_subset(store, run_name)
                shutil.rmtree(output, ignore_errors=True)
        r = report.results[-1]
        # eval_pairs: the held-out pairs TRL kept at --max-length (it drops prompts that fill it)
        return {"accuracy": r["reward_accuracy"], "loss": r["loss"], "margin_beta": r["reward_margin_beta"],
                "margin_raw": r["reward_margin_no_beta"], "eval_pairs": r["n_pairs"]}

    def close(self, store):
        from ..select.subsets import delete_subset, subset_exists

        if self._heldout and not self.keep_runs and subset_exists(store, self._heldout):
            delete_subset(store, self._heldout)
        if self._tmp and not self.work_dir and not self.keep_runs:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def title(self) -> str:
        return f"DPO ({self.loss}, beta {self.beta}) on {Path(str(self.model)).name}"

    def describe(self) -> dict[str, Any]:
        cfg = self.config("run", "run", 0).to_dict()
        keep = ("model", "ref_model", "loss", "beta", "learning_rate", "epochs", "max_steps", "batch_size",
                "gradient_accumulation_steps", "max_length", "device")
        return {"name": self.name, **{k: cfg[k] for k in keep},
                "eval": "pairsift eval on the held-out pairs: reward accuracy, DPO loss, margins with/without beta",
                "margin_beta": "includes beta", "margin_raw": "without beta"}


def make_learner(name: str, **options) -> Learner:
    """A learner by name with its options (None values are left at their defaults)."""
    opts = {k: v for k, v in options.items() if v is not None}
    if name == "reward-head":
        allowed = {"embedding", "C"}
        cls = RewardHead
    elif name == "dpo":
        allowed = {"model", "ref_model", "loss", "beta", "learning_rate", "epochs", "batch_size", "max_length",
                   "device", "keep_runs", "work_dir"}
        cls = DPO
    else:
        raise UsageError(f"--learner {name!r}: choose one of {', '.join(LEARNERS)}")
    extra = sorted(set(opts) - allowed)
    if extra:
        flags = ", ".join("--" + k.replace("_", "-") for k in extra)
        raise UsageError(f"--learner {name} does not take {flags}")
    return cls(**opts)


def drop_leftovers(store, prefix: str) -> list[str]:
    """Delete the temporary subsets (``PREFIX-...``) an interrupted run of the same comparison
    left (a killed dpo compare cannot remove its own); return their names. `prefix` carries the
    comparison's key, so other comparisons' and the user's subsets are never touched."""
    from ..store.subsets import delete_subset, read_manifests

    names = sorted({m.name for m in read_manifests(store) if m.name.startswith(f"{prefix}-")})
    for name in names:
        delete_subset(store, name)
    return names
