"""`pairsift plot`: a subset's feature distributions against its pool, in one figure.

One panel per feature (small multiples): the subset and the pool share each panel's bins and
are drawn as densities (each integrates to 1), so a subset of 200 pairs reads against a pool of
a million; dashed lines mark the medians. The pool is every candidate pair of ``pair_features``
(at the version the subset was selected from) or another subset (``vs``).

Features, by default every one present: the response cosine per embedding set (``cos_*``), the
margins (``score_margin``, ``dreward_*``), the normalised token edit distance
(``edit_norm_*``) and the full DCRM (``dcrm_<r>_<lp>``; ablations only when asked for by name).
Margins and DCRM are shown chosen-minus-rejected (:mod:`pairsift.select.orient`): the subset's
pairs by their recorded orientation, the pool's by its label; pairs with no orientation are left
out of those panels (counted in the notes). A requested column that does not exist is skipped
with a note, never an error, unless nothing is left to draw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import TableNotFound, UsageError
from ..plot import COLORS, figure, save
from ..report import Report, plural
from .orient import is_gap
from .subsets import load_subset

#: The default feature families, in panel order: (label, how to find its columns).
FAMILIES = ("cosine", "margin", "edit distance", "DCRM")
_BINS = 40


@dataclass
class PlotReport(Report):
    """What `pairsift plot` drew: the panels, what it skipped and why."""

    subset: str
    pool: str
    path: str
    n_subset: int
    n_pool: int
    columns: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"subset '{self.subset}' ({plural(self.n_subset, 'pair')}) against {self.pool} "
                 f"({plural(self.n_pool, 'pair')}): {', '.join(self.columns)} -> {self.path}"]
        lines += [f"note: skipped {c}: {why}" for c, why in self.skipped.items()]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def default_columns(names: list[str]) -> tuple[list[str], dict[str, str]]:
    """The feature columns to plot from pair_features' column `names`, and the families missing."""
    fam = {
        "cosine": sorted(n for n in names if n.startswith("cos_")),
        "margin": [n for n in names if n == "score_margin"] + sorted(n for n in names if n.startswith("dreward_")),
        "edit distance": sorted(n for n in names if n.startswith("edit_norm_")),
        "DCRM": sorted(n for n in names if n.startswith("dcrm_") and not n.startswith(
            ("dcrm_noedit_", "dcrm_nologp_", "dcrm_margin_"))),
    }
    hints = {
        "cosine": "no cos_* column (run `pairsift embed`, then `pairsift pairs`)",
        "margin": "no score_margin or dreward_* column",
        "edit distance": "no edit_norm_* column (run `pairsift score logprobs`, then `pairsift pairs`)",
        "DCRM": "no dcrm_* column (needs log-probs and a score or reward margin)",
    }
    cols = [c for f in FAMILIES for c in fam[f]]
    return cols, {f: hints[f] for f in FAMILIES if not fam[f]}


def _pair_features(store: Any, version: int | None, columns: list[str]) -> pa.Table:
    if not store.has_table("pair_features"):
        raise TableNotFound(f"store {store.uri} has no table 'pair_features': run `pairsift pairs` first")
    return store.dataset("pair_features", version).to_table(columns=["pair_id", "label", *columns])


def _members_sign(members: pa.Table) -> tuple[pa.Array, np.ndarray]:
    """(pair ids, orientation +1 a chosen / -1 b chosen / 0 unknown) of a subset's members."""
    chosen, a, b = (members.column(c) for c in ("chosen_id", "a_id", "b_id"))
    sign = np.where(pc.fill_null(pc.equal(chosen, a), False).to_numpy(zero_copy_only=False), 1,
                    np.where(pc.fill_null(pc.equal(chosen, b), False).to_numpy(zero_copy_only=False), -1, 0))
    return members.column("pair_id").combine_chunks(), sign.astype(np.int8)


def _group(features: pa.Table, pair_ids: pa.Array | None, sign: np.ndarray | None) -> tuple[pa.Table, np.ndarray]:
    """Rows of `features` for `pair_ids` (all rows if None) with their orientation."""
    if pair_ids is None:
        label = features.column("label").to_numpy(zero_copy_only=False)
        return features, np.nan_to_num(label.astype(np.float64), nan=0.0).astype(np.int8)
    idx = pc.index_in(features.column("pair_id"), value_set=pair_ids)
    keep = pc.is_valid(idx)
    rows = features.filter(keep)
    pos = pc.drop_null(idx).to_numpy()
    return rows, sign[pos]


def _values(rows: pa.Table, column: str, sign: np.ndarray) -> tuple[np.ndarray, int]:
    """Finite values of `column`, oriented chosen-minus-rejected for gaps; and how many were unoriented."""
    v = rows.column(column).to_numpy(zero_copy_only=False).astype(np.float64)
    unoriented = 0
    if is_gap(column):
        unoriented = int(((sign == 0) & np.isfinite(v)).sum())
        v = np.where(sign == 0, np.nan, v * sign)
    return v[np.isfinite(v)], unoriented


def _label(column: str) -> str:
    for prefix, text in (("cos_", "cosine of the two responses"), ("edit_norm_", "normalised token edit distance"),
                         ("dreward_", "reward margin, chosen - rejected"), ("dcrm_", "DCRM, chosen over rejected")):
        if column.startswith(prefix):
            return f"{text}\n({column})"
    if column == "score_margin":
        return "score margin, chosen - rejected\n(score_margin)"
    return column + (" (chosen - rejected)" if is_gap(column) else "")


def _edges(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Shared bins: the 0.5-99.5% range of both groups (values beyond land in the end bins);
    fewer bins when a group is small, so a few hundred pairs do not read as noise."""
    both = np.concatenate([a, b])
    smaller = min(x.size for x in (a, b) if x.size)
    n_bins = int(min(_BINS, max(12, 1.5 * np.sqrt(smaller))))
    if both.size >= 200:  # a few extreme values must not squash every other bin
        lo, hi = np.quantile(both, [0.005, 0.995])
    else:
        lo, hi = both.min(), both.max()
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, n_bins + 1)


def _params_text(manifest: Any) -> str:
    params = {k: v for k, v in (manifest["params"] or {}).items() if v not in (None, False, "")}
    text = ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
    return f"{manifest['strategy']}" + (f" ({text})" if text else "")


@dataclass
class Distributions:
    """The values each panel draws: column -> (subset values, pool values), finite, oriented."""

    subset: str
    pool: str
    title: str
    n_subset: int
    n_pool: int
    panels: dict[str, tuple[np.ndarray, np.ndarray]]
    skipped: dict[str, str]
    notes: list[str]


def distributions(store: Any, subset: str, *, vs: str | None = None,
                  columns: list[str] | None = None) -> Distributions:
    """Read what :func:`plot_subset` draws (no matplotlib): per column, the subset's and the pool's values."""
    manifest, members = load_subset(store, subset)
    version = manifest["store_versions"].get("pair_features")
    if version is None:
        raise TableNotFound(f"subset '{subset}' recorded no version of 'pair_features' (re-run `pairsift select`)")
    names = store.dataset("pair_features", version).schema.names
    skipped: dict[str, str] = {}
    if columns:
        wanted = list(dict.fromkeys(columns))
        skipped.update({c: "not a column of pair_features" for c in wanted if c not in names})
        cols = [c for c in wanted if c in names]
    else:
        cols, skipped = default_columns(names)
    if not cols:
        raise UsageError(f"nothing to plot for subset '{subset}': " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))

    features = _pair_features(store, version, cols)
    ids, sign = _members_sign(members)
    sub_rows, sub_sign = _group(features, ids, sign)
    if vs is None:
        pool_rows, pool_sign = _group(features, None, None)
        pool_name = "all candidate pairs"
    else:
        pool_manifest, pool_members = load_subset(store, vs)
        pool_version = pool_manifest["store_versions"].get("pair_features", version)
        pool_features = features if pool_version == version else _pair_features(store, pool_version, cols)
        pool_ids, pool_member_sign = _members_sign(pool_members)
        pool_rows, pool_sign = _group(pool_features, pool_ids, pool_member_sign)
        pool_name = f"subset '{vs}' ({_params_text(pool_manifest)})"

    notes: list[str] = []
    panels: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for c in cols:
        s, s_un = _values(sub_rows, c, sub_sign)
        p, p_un = _values(pool_rows, c, pool_sign)
        if s.size == 0 and p.size == 0:
            skipped[c] = "no finite value in the subset or the pool"
            continue
        if s_un or p_un:
            notes.append(f"{c}: {s_un:,} subset and {p_un:,} pool pairs have no orientation and are left out")
        panels[c] = (s, p)
    if not panels:
        raise UsageError(f"nothing to plot for subset '{subset}': " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    n_sub, n_pool = sub_rows.num_rows, pool_rows.num_rows
    title = (f"subset '{subset}': {_params_text(manifest)} - {n_sub:,} pairs\n"
             f"against {pool_name} - {n_pool:,} pairs   (dashed: medians; margins and DCRM oriented "
             "chosen - rejected)")
    return Distributions(subset, pool_name, title, n_sub, n_pool, panels, skipped, notes)


def draw(panels: dict[str, tuple[np.ndarray, np.ndarray]], out: str | Path, title: str) -> str:
    """Small multiples, one per column: the pool filled, the subset as a line, shared bins, densities."""
    ncols = 2 if len(panels) == 4 else min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig = figure(4.2 * ncols, 3.3 * nrows + 0.9)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, (c, (s, p)) in zip(axes, panels.items()):
        edges = _edges(s if s.size else p, p if p.size else s)
        for values, color, name, fill in ((p, COLORS[1], "pool", True), (s, COLORS[0], "subset", False)):
            if values.size == 0:
                continue
            clipped = np.clip(values, edges[0], edges[-1])
            ax.hist(clipped, bins=edges, density=True, color=color, alpha=0.35 if fill else 1.0,
                    histtype="stepfilled" if fill else "step", linewidth=1.8, label=f"{name} (n={values.size:,})")
            ax.axvline(float(np.median(values)), color=color, linestyle="--", linewidth=1.0)
        ax.set_xlabel(_label(c), fontsize=9)
        ax.set_ylabel("density", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.legend(fontsize=7.5, frameon=False)
        ax.grid(alpha=0.25)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save(fig, out)


def plot_subset(store: Any, subset: str, out: str | Path, *, vs: str | None = None,
                columns: list[str] | None = None) -> PlotReport:
    """Draw `subset`'s feature distributions against its pool (all candidate pairs, or subset `vs`) to `out`."""
    d = distributions(store, subset, vs=vs, columns=columns)
    path = draw(d.panels, out, d.title)
    return PlotReport(subset=subset, pool=d.pool, path=path, n_subset=d.n_subset, n_pool=d.n_pool,
                      columns=list(d.panels), skipped=d.skipped, notes=d.notes)
