"""What `compare` compares: arms, each a registered strategy with its options (or a saved subset).

An arm is written ``NAME[:KEY=VALUE[:KEY=VALUE...]][@LABEL]``, e.g. ``easy``, ``map:variant=rand@uniform``,
``dcrm:logprobs=smol``, ``top:by=cos_minilm:k=1:per_prompt=true``. Keys are the strategy's options
(dashes or underscores); values are read as int, float, true/false, else text. The label (default:
the text before ``@``, or the strategy name) names the arm in the table and the plot.

Strategies run in memory: the candidate pool of each arm is built ONCE with the same
:func:`~pairsift.select.strategies.base.build_pool` that `pairsift select` uses, then the arm's
strategy picks from it once per seed with ``numpy.random.default_rng(seed)`` — the generator
`pairsift select --seed SEED` seeds. The picks, built by the same ``members_table``, are exactly the
members `pairsift select` would save (a test checks it), without writing 160 subsets.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import UsageError
from ..select.strategies import STRATEGIES, Context, build_pool, get_strategy
from ..select.strategies.base import Pool, Strategy, members_table, resolve_embedding
from ..store.ids import id_keys
from ..store.schema import MEMBER_ROWS
from ..store.splits import Split

#: Strategies that pick (at most) one pair per prompt: their arms share the budget's prompts.
PER_PROMPT = frozenset({"easy", "hard", "centroid", "random", "dcrm"})

_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")


@dataclass(frozen=True)
class ArmSpec:
    """An arm as the user wrote it: a strategy and its options, or a saved subset."""

    label: str
    strategy: str | None
    params: dict = field(default_factory=dict)
    subset: str | None = None

    def describe(self) -> str:
        if self.subset:
            return f"subset {self.subset}"
        opts = ", ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.strategy}({opts})" if opts else str(self.strategy)


def _value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_arm(text: str) -> ArmSpec:
    """``NAME[:KEY=VALUE...][@LABEL]`` -> ArmSpec; unknown strategies and bad keys name the arm."""
    body, _, label = text.strip().partition("@")
    name, *opts = body.split(":")
    name = name.strip()
    if name not in STRATEGIES:
        raise UsageError(f"--strategy {text!r}: unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    params: dict[str, Any] = {}
    for opt in opts:
        key, sep, value = opt.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--strategy {text!r}: expected KEY=VALUE after ':', got {opt!r}")
        params[key.strip().replace("-", "_")] = _value(value.strip())
    # Default label: the name, then each option's value ("dcrm:ablation=margin-only" -> dcrm-margin-only).
    label = label.strip() or re.sub(r"[^A-Za-z0-9_.+-]+", "_", "-".join([name, *(str(v) for v in params.values())]))
    _check_label(label, text)
    return ArmSpec(label=label, strategy=name, params=params)


def _check_label(label: str, text: str) -> None:
    if not _LABEL.match(label):
        raise UsageError(
            f"--strategy {text!r}: label {label!r} must be 1-64 letters, digits, '_', '-', '.', '+' "
            "(set one with @LABEL)"
        )


def parse_arms(values, subsets=()) -> list[ArmSpec]:
    """Arms from ``--strategy`` values (each may be a comma-separated list) and ``--subset`` names."""
    arms = [parse_arm(part) for v in values for part in str(v).split(",") if part.strip()]
    for name in subsets:
        _check_label(name, name)
        arms.append(ArmSpec(label=name, strategy=None, subset=name))
    labels = Counter(a.label for a in arms)
    dup = sorted(k for k, n in labels.items() if n > 1)
    if dup:
        raise UsageError(f"two arms are labelled {', '.join(dup)}: give each a distinct @LABEL")
    if not arms:
        raise UsageError("--strategy: give at least one strategy to compare (e.g. easy,hard,random)")
    return arms


def is_per_prompt(strategy: str, params: dict) -> bool:
    """True for strategies whose picks are one pair per prompt (they differ only in which pair)."""
    if strategy in PER_PROMPT:
        return True
    if strategy == "top":
        return bool(params.get("per_prompt")) and params.get("k") == 1
    if strategy == "band":
        return params.get("per_prompt") == 1
    return False


@dataclass
class Arm:
    """One arm, resolved against the store: its pool is built once, its picks drawn per seed."""

    spec: ArmSpec
    per_prompt: bool
    strategy: Strategy | None = None
    params: dict = field(default_factory=dict)
    pool: Pool | None = None
    context: Context | None = None
    excluded: dict = field(default_factory=dict)  # what the pool dropped, by reason
    fixed: pa.Table | None = None  # a saved subset's members
    _unseeded: pa.Table | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return self.spec.label

    def picks(self, seed: int) -> pa.Table:
        """The members `pairsift select` would save for this seed (MEMBER_ROWS columns), rank order."""
        if self.fixed is not None:
            return self.fixed
        if not self.strategy.uses_seed:  # deterministic strategies pick the same pairs for every seed
            if self._unseeded is None:
                self._unseeded = self._pick(seed)
            return self._unseeded
        return self._pick(seed)

    def _pick(self, seed: int) -> pa.Table:
        pool = self.pool
        saved = (pool.excluded, pool.prompts_excluded)
        pool.excluded, pool.prompts_excluded = Counter(saved[0]), Counter(saved[1])  # picks may count
        try:
            picks = self.strategy.pick(pool, self.params, np.random.default_rng(seed), self.context)
        finally:
            pool.excluded, pool.prompts_excluded = saved
        margin_source = self.strategy.orientation(self.params).label_source
        return members_table(pool, picks.rows, picks.score, self.label, margin_source, MEMBER_ROWS)

    def describe(self) -> dict:
        out = {"label": self.label, "draw": "shared prompts" if self.per_prompt else "pairs drawn from the arm's selection"}
        if self.spec.subset:
            out["subset"] = self.spec.subset
        else:
            out.update(strategy=self.spec.strategy, params=self.params, pool={
                "candidates": self.pool.df.height, "rows_read": self.pool.rows_read, "excluded": self.excluded})
        return out


def resolve_arm(store, spec: ArmSpec, versions: dict[str, int], split: Split, embedding: str | None = None) -> Arm:
    """Configure the strategy, build its pool at the pinned versions (held-out prompts excluded).

    `embedding` is the default ``embedding`` option of strategies that take one and were given none."""
    if spec.subset:
        return _subset_arm(store, spec, split)
    strat = get_strategy(spec.strategy)
    params = dict(spec.params)
    if embedding and "embedding" in strat.defaults and params.get("embedding") is None:
        params["embedding"] = embedding
    try:
        p = strat.configure(params)
    except UsageError as e:
        raise UsageError(f"arm '{spec.label}': {e}") from e
    resolve_embedding(store.dataset("pair_features", versions["pair_features"]).schema, p)
    for t in strat.tables(p):
        if not store.has_table(t):
            raise UsageError(f"arm '{spec.label}': store has no table '{t}': run `pairsift embed` first")
        versions.setdefault(t, store.table(t).version)
    try:
        pool = build_pool(store, strat, p, versions["pair_features"], None)
    except UsageError as e:
        raise UsageError(f"arm '{spec.label}': {e}") from e
    if not pool.labelled:
        raise UsageError(
            f"arm '{spec.label}': the candidate pairs carry no label or score, so nothing can be trained "
            "or evaluated: label them first (`pairsift export` + `pairsift label import`)"
        )
    excluded = {k: v for k, v in sorted(pool.excluded.items()) if v}
    return Arm(spec, is_per_prompt(strat.name, p), strat, p, pool, Context(store, versions), excluded)


def _subset_arm(store, spec: ArmSpec, split: Split) -> Arm:
    """A saved subset as an arm: refused when it was made before the split or holds held-out prompts."""
    from ..select.subsets import load_subset

    manifest, members = load_subset(store, spec.subset)
    created = manifest["created_at"]
    if created < datetime.fromisoformat(split.created_at):
        raise UsageError(
            f"subset '{spec.subset}' was selected on {created.isoformat()}, before the held-out split ({split.describe()}): "
            "it may contain held-out prompts, so evaluating on them would leak; select it again "
            "(`pairsift select ... --replace`) so the split is respected"
        )
    held = np.isin(id_keys(members.column("prompt_id")), split.heldout_keys)
    if held.any():
        raise UsageError(
            f"subset '{spec.subset}' holds {int(held.sum())} pairs of held-out prompts: select it again "
            "(`pairsift select ... --replace`) so the split is respected"
        )
    unlabelled = members.column("chosen_id").null_count
    if unlabelled:
        raise UsageError(f"subset '{spec.subset}' has {unlabelled} unlabelled pairs: run `pairsift label import` first")
    return Arm(spec, per_prompt=False, fixed=members, excluded={})
