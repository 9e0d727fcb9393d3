"""`pairsift compare`: for each arm x budget x seed, train a learner on the arm's pairs and score
it on the held-out pairs; summarise with 95% intervals; write a table, JSON, a curve and a manifest.

Order of work, so that bad input writes nothing: parse and validate every option, read the split,
check the learner's inputs, build every arm's pool and picks for every seed, draw the budgets and
check each fits (all reads), and only then run and write the output folder. The store is only
written by the ``dpo`` learner (a subset per run and one for the held-out pairs, removed after).

Everything is a function of the arguments and the store's contents, so a re-run gives the same
numbers: strategy randomness is ``default_rng(seed)`` (as `pairsift select --seed`), budget
draws are hashes of (seed, key) (:mod:`.draws`), the held-out sample is a hash of the pair key,
and the reward head's solver is deterministic.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..errors import TableNotFound, UsageError, require
from ..report import Report
from ..store.ids import id_keys
from ..store.schema import MEMBER_ROWS
from ..store.splits import Split, read_split
from .arms import Arm, ArmSpec, parse_arms, resolve_arm
from .draws import EVAL_STREAM, SeedDraw, draw, order_by_draw
from .learners import Learner, make_learner

#: Files written into the output folder.
OUTPUTS = {"results": "results.json", "manifest": "manifest.json", "table": "table.txt", "plot": "curve.png",
           "runs": "runs.jsonl"}
#: Arms the paired differences are taken against when --baseline is not given (first found).
BASELINE_STRATEGIES = ("random", "random-half")


def parse_budgets(text: str | list) -> list[int | str]:
    """``100,200,400`` -> [100, 200, 400]; ``max`` is the largest budget every arm can take."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[int | str] = []
    for item in items:
        item = str(item).strip()
        if not item:
            continue
        if item == "max":
            out.append("max")
            continue
        try:
            n = int(item)
        except ValueError:
            raise UsageError(f"--budgets: {item!r} is not a number of labelled pairs (or 'max')") from None
        if n < 1:
            raise UsageError(f"--budgets: a budget is at least 1 labelled pair, got {n}")
        out.append(n)
    if not out:
        raise UsageError("--budgets: give at least one budget, e.g. 100,200,400")
    return out


def parse_seeds(text: str | int | list) -> list[int]:
    """``10`` -> seeds 0..9; ``3,7,11`` -> exactly those seeds."""
    if isinstance(text, int):
        return list(range(text)) if text >= 1 else _bad_seeds(text)
    if isinstance(text, list):
        seeds = [int(s) for s in text]
    elif "," in str(text):
        try:
            seeds = [int(s) for s in str(text).split(",") if s.strip()]
        except ValueError:
            raise UsageError(f"--seeds {text!r}: a count (10) or a list of integers (3,7,11)") from None
    else:
        try:
            n = int(text)
        except ValueError:
            raise UsageError(f"--seeds {text!r}: a count (10) or a list of integers (3,7,11)") from None
        return list(range(n)) if n >= 1 else _bad_seeds(n)
    if len(set(seeds)) != len(seeds) or not seeds:
        raise UsageError(f"--seeds {text!r}: give distinct seeds")
    return seeds


def _bad_seeds(n):
    raise UsageError(f"--seeds: need at least 1 seed, got {n}")


@dataclass
class Plan:
    """Everything a comparison needs, read and validated; nothing written yet."""

    arms: list[Arm]
    budgets: list[int]
    seeds: list[int]
    learner: Learner
    split: Split
    versions: dict[str, int]
    heldout: pa.Table  # oriented held-out pairs (MEMBER_ROWS columns)
    heldout_info: dict
    picks: dict[tuple[str, int], pa.Table]  # (arm, seed) -> the arm's picks
    draws: dict[int, SeedDraw]
    baseline: str | None
    key: str  # short hash of the arguments, names what the dpo learner saves

    @property
    def total(self) -> int:
        return len(self.arms) * len(self.budgets) * len(self.seeds)


def heldout_pairs(store, version: int, split: Split) -> tuple[pa.Table, dict]:
    """Every oriented pair of a held-out prompt in ``pair_features``, as MEMBER_ROWS rows."""
    cols = ["pair_id", "prompt_id", "a_id", "b_id", "label", "label_source"]
    t = store.dataset("pair_features", version).to_table(columns=cols)
    held = np.isin(id_keys(t.column("prompt_id")), split.heldout_keys)
    t = t.filter(pa.array(held))
    label = t.column("label").to_numpy(zero_copy_only=False)
    labelled = ~np.isnan(label.astype(np.float64)) if t.column("label").null_count else np.ones(t.num_rows, bool)
    info = {"pairs_of_heldout_prompts": t.num_rows, "unlabelled": int((~labelled).sum())}
    t = t.filter(pa.array(labelled))
    a_first = pa.array(t.column("label").to_numpy(zero_copy_only=False) == 1)
    import pyarrow.compute as pc

    n = t.num_rows
    members = pa.table({
        "subset": pa.array(["heldout"] * n, pa.string()),
        "pair_id": t.column("pair_id"),
        "prompt_id": t.column("prompt_id"),
        "rank": pa.array(np.arange(n, dtype=np.int64)),
        "score": pa.nulls(n, pa.float64()),
        "chosen_id": pc.if_else(a_first, t.column("a_id"), t.column("b_id")),
        "rejected_id": pc.if_else(a_first, t.column("b_id"), t.column("a_id")),
        "label_source": t.column("label_source"),
        "a_id": t.column("a_id"),
        "b_id": t.column("b_id"),
    }).cast(MEMBER_ROWS)
    return members, info


def _key(args: dict) -> str:
    return hashlib.blake2b(json.dumps(args, sort_keys=True, default=str).encode(), digest_size=4).hexdigest()


def plan(
    store,
    arms: list[str] | list[ArmSpec],
    budgets,
    seeds,
    learner: Learner,
    *,
    subsets: list[str] = (),
    baseline: str | None = None,
    eval_pairs: int | None = None,
    embedding: str | None = None,
) -> Plan:
    """Validate everything and prepare the runs; only reads the store."""
    for module in ("sklearn", "scipy", "matplotlib"):  # statistics, the reward head, the plot
        require(module, "train")
    specs = arms if arms and isinstance(arms[0], ArmSpec) else parse_arms(arms, subsets)
    budget_list = parse_budgets(budgets)
    seed_list = parse_seeds(seeds)
    if eval_pairs is not None and eval_pairs < 1:
        raise UsageError(f"--eval-pairs must be >= 1, got {eval_pairs}")
    labels = [s.label for s in specs]
    if baseline is not None and baseline not in labels:
        raise UsageError(f"--baseline {baseline!r} is not one of the arms ({', '.join(labels)})")
    if baseline is None:
        baseline = next((s.label for s in specs if s.strategy in BASELINE_STRATEGIES), None)

    if not store.has_table("pair_features"):
        raise TableNotFound(f"store {store.uri} has no table 'pair_features': run `pairsift pairs` first")
    split = read_split(store)
    if split is None:
        raise UsageError(
            "the store has no held-out split, so there is nothing to evaluate on: "
            "run `pairsift split --holdout 0.2 --seed 0` first"
        )
    versions = store.versions(["pair_features", *[t for t in ("prompts", "responses") if store.has_table(t)]])
    versions["splits"] = split.version
    versions.update(learner.check(store))

    default_embedding = embedding or getattr(learner, "embedding", None)
    resolved = [resolve_arm(store, s, versions, split, default_embedding) for s in specs]
    learner.load(store)
    heldout, info = heldout_pairs(store, versions["pair_features"], split)
    usable = learner.usable(heldout)
    info["not_usable_by_learner"] = int((~usable).sum())
    heldout = heldout.filter(pa.array(usable))
    if eval_pairs is not None and heldout.num_rows > eval_pairs:
        order = order_by_draw(id_keys(heldout.column("pair_id")), 0, EVAL_STREAM)[:eval_pairs]
        heldout = heldout.take(pa.array(np.sort(order)))
        info["sampled"] = eval_pairs
    if heldout.num_rows == 0:
        raise UsageError(
            "no labelled held-out pair to evaluate on (held-out prompts have no oriented pair the learner can use): "
            "check `pairsift split` and that `pairsift pairs` ran after the last ingest"
        )
    info["pairs"] = heldout.num_rows
    info["prompts"] = len(np.unique(id_keys(heldout.column("prompt_id"))))

    picks: dict[tuple[str, int], pa.Table] = {}
    draws: dict[int, SeedDraw] = {}
    per_prompt = {a.label: a.per_prompt for a in resolved}
    for seed in seed_list:
        keys = {}
        for arm in resolved:
            m = arm.picks(seed)
            picks[(arm.label, seed)] = m
            keys[arm.label] = (id_keys(m.column("prompt_id")), id_keys(m.column("pair_id")), learner.usable(m))
        draws[seed] = draw(seed, keys, per_prompt)
    avail = {a.label: min(draws[s].available(a.label) for s in seed_list) for a in resolved}
    largest = min(avail.values())
    out_budgets: list[int] = []
    for b in budget_list:
        n = largest if b == "max" else b
        if n > largest:
            worst = min(avail, key=avail.get)
            arm = next(a for a in resolved if a.label == worst)
            what = ("prompts every per-prompt arm has a usable pick for" if arm.per_prompt
                    else "usable pairs in its selection")
            raise UsageError(
                f"--budgets {b} is larger than the pool: arm '{worst}' has {avail[worst]:,} {what} "
                f"(after the held-out split); the largest budget every arm can take is {largest:,} (or pass 'max')"
            )
        if n < 1:
            raise UsageError(f"arm '{min(avail, key=avail.get)}' has no usable pair to train on")
        if n not in out_budgets:
            out_budgets.append(n)
    out_budgets.sort()
    # Keep only what the largest budget trains on: each arm's picks in draw order, cut at max(N).
    top = out_budgets[-1]
    for seed in seed_list:
        for label, order in draws[seed].order.items():
            picks[(label, seed)] = picks[(label, seed)].take(pa.array(order[:top]))
            draws[seed].order[label] = np.arange(min(top, len(order)))
    key = _key({"arms": [a.describe() for a in resolved], "budgets": out_budgets, "seeds": seed_list,
                "learner": learner.describe(), "versions": versions})
    return Plan(resolved, out_budgets, seed_list, learner, split, versions, heldout, info, picks, draws,
                baseline, key)


def run(store, plan: Plan, progress: Callable[[int, int, str], None] | None = None,
        on_run: Callable[[dict], None] | None = None) -> list[dict]:
    """Train and evaluate every arm x budget x seed; one row per run (also passed to `on_run`)."""
    learner = plan.learner
    prefix = f"cmp-{plan.key}"
    learner.prepare(store, plan.heldout, plan.versions, prefix)
    rows: list[dict] = []
    done = 0
    try:
        for seed in plan.seeds:
            for budget in plan.budgets:
                for arm in plan.arms:
                    members = plan.picks[(arm.label, seed)]
                    idx = plan.draws[seed].order[arm.label][:budget]
                    train = members.take(pa.array(idx))
                    name = f"{prefix}-{arm.label}-n{budget}-s{seed}".replace(".", "_").replace("+", "_")
                    metrics = learner.run(store, train, plan.versions, name, seed)
                    rows.append({
                        "arm": arm.label, "budget": budget, "seed": seed, "n_pairs": train.num_rows,
                        "n_prompts": len(np.unique(id_keys(train.column("prompt_id")))),
                        **{k: float(v) for k, v in metrics.items()},
                    })
                    if on_run:
                        on_run(rows[-1])
                    done += 1
                    if progress:
                        progress(done, plan.total, f"{arm.label} n={budget} seed={seed}")
    finally:
        learner.close(store)
    return rows


@dataclass
class CompareResult(Report):
    """Every cell's statistics, every run, the manifest, the human table and the files written."""

    manifest: dict
    cells: list[dict]
    runs: list[dict]
    table: str
    paths: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"cells": self.cells, "runs": self.runs, "paths": self.paths, "manifest": self.manifest}

    def summary(self) -> str:
        return self.table


def check_out(out: str | Path | None, overwrite: bool) -> Path | None:
    if out is None:
        return None
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    if (out / OUTPUTS["manifest"]).exists() and not overwrite:
        raise UsageError(f"--out {out}: holds an earlier comparison; choose another folder or pass --overwrite")
    return out


def compare(
    store,
    arms: list[str],
    budgets,
    seeds,
    learner: str | Learner = "reward-head",
    out: str | Path | None = None,
    *,
    subsets: list[str] = (),
    baseline: str | None = None,
    eval_pairs: int | None = None,
    embedding: str | None = None,
    overwrite: bool = False,
    title: str | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    **learner_options,
) -> CompareResult:
    """Compare selection strategies on held-out data at several label budgets (see module doc).

    `arms`: ``NAME[:KEY=VALUE...][@LABEL]`` strings (:mod:`.arms`); `subsets`: saved subsets to
    compare too; `budgets`: ``"100,200,max"`` or a list; `seeds`: a count or a list; `learner`:
    ``reward-head`` or ``dpo`` (options as keywords, e.g. ``model=PATH``); `embedding`: the
    reward head's response-embedding set and the default ``embedding`` of every strategy that
    takes one. Writes ``results.json``, ``manifest.json``, ``table.txt`` and ``curve.png``
    into `out` when given; `title` heads the plot.
    """
    from .manifest import build_manifest
    from .report import format_table, summarise

    out_dir = check_out(out, overwrite)
    if learner == "reward-head":
        learner_options["embedding"] = embedding
    lrn = learner if isinstance(learner, Learner) else make_learner(learner, **learner_options)
    p = plan(store, arms, budgets, seeds, lrn, subsets=subsets, baseline=baseline, eval_pairs=eval_pairs,
             embedding=embedding)
    on_run = None
    if out_dir is not None:
        # Validated: from here on the folder may be written. Runs land as they finish (long dpo
        # comparisons keep what they measured if stopped); the summary files come at the end.
        out_dir.mkdir(parents=True, exist_ok=True)
        runs_path = out_dir / OUTPUTS["runs"]
        runs_path.write_text("")

        def on_run(row: dict) -> None:
            with runs_path.open("a") as f:
                f.write(json.dumps(row, sort_keys=True) + "\n")

    runs = run(store, p, progress, on_run)
    cells = summarise(runs, [a.label for a in p.arms], p.budgets, lrn.metrics, p.baseline, lrn.lower_is_better)
    manifest = build_manifest(store, p)
    scored = sorted({r["eval_pairs"] for r in runs if r.get("eval_pairs") is not None})
    if scored:  # the dpo learner: TRL drops held-out pairs that do not fit --max-length
        manifest["heldout"]["scored"] = scored[0] if len(scored) == 1 else scored
    if title:
        manifest["title"] = title
    table = format_table(cells, lrn, p.baseline, manifest)
    result = CompareResult(manifest, cells, runs, table)
    if out_dir is not None:
        result.paths = write_outputs(out_dir, result, lrn, p)
    return result


def write_outputs(out: Path, result: CompareResult, learner: Learner, p: Plan) -> dict[str, str]:
    from .plot import plot_curves

    out.mkdir(parents=True, exist_ok=True)
    paths = {k: str(out / v) for k, v in OUTPUTS.items()}
    # results.json holds only numbers that a re-run reproduces (no timestamps): compare it byte for byte.
    results = {"cells": result.cells, "runs": result.runs, "metrics": list(learner.metrics),
               "lower_is_better": list(learner.lower_is_better), "baseline": p.baseline,
               "interval": result.manifest["interval"]}
    Path(paths["results"]).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    Path(paths["manifest"]).write_text(json.dumps(result.manifest, indent=2, sort_keys=True, default=str) + "\n")
    Path(paths["table"]).write_text(result.table + "\n")
    plot_curves(result.cells, [a.label for a in p.arms], learner, paths["plot"],
                title=result.manifest.get("title"))
    return paths
