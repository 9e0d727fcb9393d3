"""The comparison's manifest: what was compared, on which data, with which learner — enough to re-run it."""

from __future__ import annotations

from datetime import datetime, timezone

INTERVAL = "95% t-interval over seeds (mean ± t(0.975, n-1)·sd/√n); held-out set fixed"


def build_manifest(store, plan) -> dict:
    from .. import __version__

    split = plan.split
    return {
        "kind": "pairsift.compare",
        "created_at": datetime.now(timezone.utc).isoformat(),
        "pairsift_version": __version__,
        "store": store.uri,
        "store_versions": dict(plan.versions),
        "split": {**split.meta, "table_version": split.version},
        "arms": [a.describe() for a in plan.arms],
        "budgets": plan.budgets,
        "seeds": plan.seeds,
        "learner": plan.learner.describe(),
        "heldout": plan.heldout_info,
        "eligible_prompts": {str(s): d.eligible_prompts for s, d in plan.draws.items()},
        "baseline": plan.baseline,
        "interval": INTERVAL,
        "budget_rule": (
            "per-prompt arms share the budget's prompts (the first N eligible prompts by a per-seed hash draw) "
            "and differ only in which pair of each prompt they took; pool-level arms draw their N pairs from "
            "their own selection by a per-seed hash of the pair key (see pairsift/compare/draws.py)"
        ),
        "runs": plan.total,
        "key": plan.key,
    }
