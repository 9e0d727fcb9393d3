"""`pairsift label stats`: who labelled what, how fast, how much they agree, and whether they
agree more on dissimilar pairs (REAL's claim, measured on your own annotators).

Computed from the labels that count (:func:`.table.effective`) given in this subset. Per
annotator: labels by choice (skips included), undone labels, median and mean seconds per
label. Agreement (:mod:`.agreement`) over the votes (skips are not votes) of pairs with at
least two: raw, Fleiss' kappa, Cohen's kappa when there are exactly two annotators, and Cohen's
kappa for every annotator pair. Against the cosine: the pairs with two or more votes split into
equal-count bins of ``cos_<embedding>`` (from ``pair_features``), raw agreement and Fleiss'
kappa per bin; a PNG is written only where ``plot`` says.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import TableNotFound, UsageError, require
from ..store import Store
from .agreement import cohen_kappa, fleiss_kappa, raw_agreement
from .table import CHOICES, VOTES, effective, read


@dataclass
class AnnotatorStats:
    annotator: str
    labels: int
    choices: dict[str, int]
    undone: int
    seconds_median: float | None
    seconds_mean: float | None


@dataclass
class CosineBin:
    lo: float
    hi: float
    pairs: int
    cos_mean: float
    raw_agreement: float | None
    fleiss_kappa: float | None


@dataclass
class StatsReport:
    subset: str
    pairs: int = 0  # in the subset
    pairs_voted: int = 0  # with at least one vote
    pairs_multi: int = 0  # with two or more votes (what agreement is measured on)
    labels: int = 0
    annotators: list[AnnotatorStats] = field(default_factory=list)
    raw_agreement: float | None = None
    fleiss_kappa: float | None = None
    cohen_kappa: float | None = None  # exactly two annotators
    pairwise: list[dict] = field(default_factory=list)  # {a, b, pairs, agreement, cohen_kappa}
    embedding: str | None = None
    cosine_bins: list[CosineBin] = field(default_factory=list)
    cosine_note: str | None = None  # why there is no agreement-by-cosine table
    plot: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        def f(x, fmt="{:.3f}"):
            return "-" if x is None else fmt.format(x)

        lines = [(f"'{self.subset}': {self.labels:,} labels on {self.pairs_voted:,} of {self.pairs:,} pairs; "
                  f"{self.pairs_multi:,} pairs with two or more votes")]
        lines.append(f"{'annotator':<20} {'labels':>7} " + " ".join(f"{c:>8}" for c in CHOICES)
                     + f" {'undone':>7} {'s/label':>8}")
        for a in self.annotators:
            lines.append(f"{a.annotator:<20} {a.labels:>7} " + " ".join(f"{a.choices.get(c, 0):>8}" for c in CHOICES)
                         + f" {a.undone:>7} {f(a.seconds_median, '{:.1f}'):>8}")
        lines.append(f"agreement: raw {f(self.raw_agreement)}, Fleiss' kappa {f(self.fleiss_kappa)}"
                     + (f", Cohen's kappa {f(self.cohen_kappa)}" if self.cohen_kappa is not None else ""))
        if self.cosine_bins:
            lines.append(f"agreement by cos_{self.embedding} (equal-count bins):")
            lines.append(f"  {'cosine':>17} {'pairs':>6} {'raw':>6} {'kappa':>6}")
            for b in self.cosine_bins:
                lines.append(f"  [{b.lo:>6.3f}, {b.hi:>6.3f}] {b.pairs:>6} {f(b.raw_agreement):>6} {f(b.fleiss_kappa):>6}")
        elif self.cosine_note:
            lines.append(f"agreement by cosine: {self.cosine_note}")
        if self.plot:
            lines.append(f"plot: {self.plot}")
        return "\n".join(lines)


def count_matrix(votes: pl.DataFrame, pair_ids: list[str]) -> np.ndarray:
    """[pair, category] vote counts, rows in `pair_ids` order, columns in VOTES order."""
    if not pair_ids:
        return np.zeros((0, len(VOTES)), dtype=np.int64)
    counts = votes.group_by("pair_id").agg(*[(pl.col("choice") == c).sum().alias(c) for c in VOTES])
    df = pl.DataFrame({"pair_id": pair_ids}).join(counts, on="pair_id", how="left", maintain_order="left").fill_null(0)
    return df.select(list(VOTES)).to_numpy().astype(np.int64)


def _embedding(store: Store, embedding: str | None) -> tuple[str | None, str | None]:
    """(the cosine set to bin by, or why there is none)."""
    if not store.has_table("pair_features"):
        if embedding is not None:
            raise TableNotFound(f"store {store.uri} has no table 'pair_features': run `pairsift pairs` first")
        return None, "no pair_features table (run `pairsift pairs`)"
    names = sorted(n[4:] for n in store.dataset("pair_features").schema.names if n.startswith("cos_"))
    if embedding is not None:
        if embedding not in names:
            raise UsageError(f"--embedding {embedding!r}: pair_features has cosines for {', '.join(names) or 'none'}")
        return embedding, None
    if len(names) > 1:
        return None, f"pass --embedding NAME (pair_features has cosines for {', '.join(names)})"
    if not names:
        return None, "pair_features has no cosine column (run `pairsift embed` and `pairsift pairs`)"
    return names[0], None


def label_stats(
    store: Store, subset: str, *, embedding: str | None = None, bins: int = 5, plot: str | Path | None = None
) -> StatsReport:
    """Annotator counts and speed, agreement, and agreement by cosine for `subset`."""
    from ..select.subsets import load_subset

    if bins < 1:
        raise UsageError(f"--bins must be >= 1, got {bins}")
    _, members = load_subset(store, subset)
    pair_ids = members.column("pair_id").to_pylist()
    everything = read(store, subset)
    eff = effective(everything)
    report = StatsReport(subset, pairs=len(pair_ids), labels=eff.height)
    undone = everything.filter(pl.col("undone_at").is_not_null()).group_by("annotator").len()
    undone_by = dict(undone.iter_rows())
    for name in sorted(eff["annotator"].unique().to_list()):
        mine = eff.filter(pl.col("annotator") == name)
        secs = mine["seconds"].drop_nulls()
        report.annotators.append(AnnotatorStats(
            annotator=name, labels=mine.height,
            choices={c: int((mine["choice"] == c).sum()) for c in CHOICES if (mine["choice"] == c).any()},
            undone=int(undone_by.get(name, 0)),
            seconds_median=float(secs.median()) if secs.len() else None,
            seconds_mean=float(secs.mean()) if secs.len() else None,
        ))

    votes = eff.filter(pl.col("choice").is_in(VOTES))
    m = count_matrix(votes, pair_ids)
    n = m.sum(axis=1)
    report.pairs_voted = int((n >= 1).sum())
    report.pairs_multi = int((n >= 2).sum())
    report.raw_agreement = raw_agreement(m)
    report.fleiss_kappa = fleiss_kappa(m)
    raters = sorted(votes["annotator"].unique().to_list())
    by = {name: dict(votes.filter(pl.col("annotator") == name).select("pair_id", "choice").iter_rows())
          for name in raters}
    for a, b in itertools.combinations(raters, 2):
        both = sorted(set(by[a]) & set(by[b]))
        if not both:
            continue
        x, y = [by[a][p] for p in both], [by[b][p] for p in both]
        report.pairwise.append({"a": a, "b": b, "pairs": len(both),
                                "agreement": float(np.mean([u == v for u, v in zip(x, y)])),
                                "cohen_kappa": cohen_kappa(x, y)})
    if len(raters) == 2 and report.pairwise:
        report.cohen_kappa = report.pairwise[0]["cohen_kappa"]

    report.embedding, report.cosine_note = _embedding(store, embedding)
    if report.embedding is not None and report.pairs_multi:
        report.cosine_bins = _by_cosine(store, report.embedding, pair_ids, m, bins)
    elif report.embedding is not None:
        report.cosine_note = "no pair has two votes yet"
    if plot is not None:
        if not report.cosine_bins:
            raise UsageError("--plot: no pair has both a cosine and two votes yet, so there is nothing to plot")
        report.plot = str(write_plot(report, Path(plot)))
    return report


def _by_cosine(store: Store, embedding: str, pair_ids: list[str], m: np.ndarray, bins: int) -> list[CosineBin]:
    col = f"cos_{embedding}"
    got = store.dataset("pair_features").to_table(columns=["pair_id", col],
                                                  filter=pc.field("pair_id").isin(pa.array(pair_ids)))
    cos = dict(zip(got.column("pair_id").to_pylist(), got.column(col).to_pylist()))
    values = np.array([np.nan if cos.get(p) is None else cos[p] for p in pair_ids], dtype=np.float64)
    keep = (m.sum(axis=1) >= 2) & np.isfinite(values)
    values, m = values[keep], m[keep]
    if not len(values):
        return []
    edges = np.unique(np.quantile(values, np.linspace(0, 1, min(bins, len(values)) + 1)))
    which = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, max(len(edges) - 2, 0))
    out = []
    for k in range(max(len(edges) - 1, 1)):
        sel = which == k
        if not sel.any():
            continue
        lo, hi = (edges[k], edges[k + 1]) if len(edges) > 1 else (edges[0], edges[0])
        out.append(CosineBin(float(lo), float(hi), int(sel.sum()), float(values[sel].mean()),
                             raw_agreement(m[sel]), fleiss_kappa(m[sel])))
    return out


def write_plot(report: StatsReport, path: Path) -> Path:
    """Agreement against cosine as a PNG (matplotlib's object API: no global pyplot state)."""
    require("matplotlib", "label")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x = [b.cos_mean for b in report.cosine_bins]
    raw = [np.nan if b.raw_agreement is None else b.raw_agreement for b in report.cosine_bins]
    kappa = [np.nan if b.fleiss_kappa is None else b.fleiss_kappa for b in report.cosine_bins]
    fig = Figure(figsize=(6.4, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(x, raw, "o-", label="raw agreement")
    ax.plot(x, kappa, "s--", label="Fleiss' kappa")
    for b, y in zip(report.cosine_bins, raw):
        if np.isfinite(y):
            ax.annotate(f"n={b.pairs}", (b.cos_mean, y), textcoords="offset points", xytext=(0, 6),
                        ha="center", fontsize=8)
    ax.set_xlabel(f"cosine of the two responses (cos_{report.embedding}), bin mean")
    ax.set_ylabel("agreement")
    ax.set_title(f"Annotator agreement by pair similarity: subset '{report.subset}'")
    ax.margins(y=0.15)  # room for the n= labels
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
