"""Selection strategies, one module per family, and the registry the CLI and `select` use.

=============  ==========================================================================
easy, hard     REAL per prompt: smallest / largest cosine (``--embedding``)
centroid       REAL per prompt: 2-means on the response embeddings, nearest each centre
random         REAL per prompt: a seeded uniform pair
easy-half,     REAL single-pair data: first / last floor(N/2) by cosine, or a seeded
hard-half,     random floor(N/2)
random-half
band           cosine in [--min, --max], optionally --per-prompt K
dcrm           best-of-N² by DCRM (``--reward``, ``--logprobs``, ``--ablation``,
               ``--different-source``)
map            M_AP top --ratio (``--variant map|rm_margin|logp_margin_norm_abs|rand``)
top            top --k/--ratio by any numeric column (``--per-prompt``, ``--descending``)
=============  ==========================================================================
"""

from __future__ import annotations

from ...errors import UsageError
from .band import Band
from .base import Context, Picks, Pool, Strategy, build_pool
from .dcrm import DCRM
from .map import MAP
from .real import Centroid, Easy, EasyHalf, Hard, HardHalf, Random, RandomHalf
from .top import Top

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (Easy, Hard, Centroid, Random, EasyHalf, HardHalf, RandomHalf, Band, DCRM, MAP, Top)
}


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]()
    except KeyError:
        raise UsageError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}") from None


__all__ = ["STRATEGIES", "Context", "Picks", "Pool", "Strategy", "build_pool", "get_strategy"]
