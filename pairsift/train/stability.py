"""`pairsift stability`: REAL's embedding-stability check across checkpoints (docs/METHODS.md §1).

For every pair of a subset, the cosine between its two responses' embeddings under each
checkpoint: the response text ALONE, last hidden state, masked mean pooling, fp32, L2-normalised
— the compute engine's own embedding path (:mod:`pairsift.compute.embed`), so these are the
numbers `pairsift embed` would store. If response-only embeddings are stable during DPO (the
paper's claim that makes off-policy selection valid) the distribution does not move.

Blank responses are not embeddable (as in `pairsift embed`): their pairs get NaN and are
excluded from every statistic; ``n_blank`` counts them. Works on unlabelled subsets too.

The plot is drawn only when asked for (`plot=PATH`), with matplotlib's object-oriented API on
an Agg canvas: no pyplot, no global backend switch, nothing left in the caller's process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from ..report import Report, plural
from ..store import Store
from .config import STABILITY_DEFAULTS
from .stream import subset_table

EMBEDDING = "response alone, last hidden state, masked mean, fp32, L2-normalised"


@dataclass
class StabilityReport(Report):
    """The subset's pair-cosine distribution under each checkpoint and its drift from the first."""

    subset: str
    n_pairs: int
    max_length: int
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    max_mean_abs_shift: float = 0.0
    min_pearson_vs_first: float = 1.0
    plot: str | None = None
    embedding: str = EMBEDDING

    def summary(self) -> str:
        lines = [f"subset {self.subset}: {plural(self.n_pairs, 'pair')}, cosines of their responses' embeddings"]
        for c in self.checkpoints:
            corr = "-" if c["pearson_vs_first"] is None else f"{c['pearson_vs_first']:.3f}"
            mean = "-" if c["mean"] is None else f"{c['mean']:.4f}"
            std = "-" if c["std"] is None else f"{c['std']:.4f}"
            shift = "-" if c["mean_abs_shift"] is None else f"{c['mean_abs_shift']:.4f}"
            lines.append(f"{c['model']}: mean cos {mean} (std {std}), mean |shift| {shift}, pearson vs first {corr}")
        tail = f"; plot {self.plot}" if self.plot else ""
        lines.append(f"max mean |shift| {self.max_mean_abs_shift:.4f}{tail}")
        return "\n".join(lines)


def embed_texts(loaded: Any, texts: list[str], max_length: int = STABILITY_DEFAULTS.max_length,
                batch_tokens: int | None = None) -> np.ndarray:
    """[n, d] fp32 L2-normalised response embeddings; NaN rows for blank texts."""
    from ..compute.embed import pool_forward
    from ..compute.engine import Engine
    from ..compute.tokenize import tokenize

    net, tok = loaded.model, loaded.tokenizer
    dim = int(net.config.hidden_size)
    out = np.full((len(texts), dim), np.nan, dtype=np.float32)
    keep = np.flatnonzero([bool(t and t.strip()) for t in texts])
    if len(keep):
        seqs, _ = tokenize(tok, [texts[i] for i in keep], max_length)
        device = str(next(net.parameters()).device)
        engine = Engine(device, batch_tokens, pad_id=tok.pad_token_id or 0)
        for idx, res in engine.run(pool_forward(net, "mean"), seqs):
            out[keep[idx]] = res["vector"]
    return out


def pair_cosines(loaded: Any, a_texts: list[str], b_texts: list[str], max_length: int = STABILITY_DEFAULTS.max_length,
                 batch_tokens: int | None = None) -> np.ndarray:
    """Cosine of each (a, b) pair's response embeddings; each distinct text is embedded once."""
    uniq, inverse = np.unique(np.array(a_texts + b_texts, dtype=object), return_inverse=True)
    vecs = embed_texts(loaded, list(uniq), max_length, batch_tokens)
    n = len(a_texts)
    va, vb = vecs[inverse[:n]], vecs[inverse[n:]]
    return np.einsum("ij,ij->i", va.astype(np.float64), vb.astype(np.float64))


def summarise(cosines: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per-checkpoint distribution and its drift from the first checkpoint."""
    labels = list(cosines)
    base = cosines[labels[0]]
    per = []
    for label in labels:
        c = cosines[label]
        ok = np.isfinite(c) & np.isfinite(base)
        v = c[np.isfinite(c)]
        d = c[ok] - base[ok]
        entry = {
            "model": label,
            "n": int(v.size),
            "n_blank": int((~np.isfinite(c)).sum()),
            "mean": float(v.mean()) if v.size else None,
            "std": float(v.std()) if v.size else None,
            "p05": float(np.quantile(v, 0.05)) if v.size else None,
            "p50": float(np.quantile(v, 0.50)) if v.size else None,
            "p95": float(np.quantile(v, 0.95)) if v.size else None,
            "mean_shift": float(d.mean()) if d.size else None,
            "mean_abs_shift": float(np.abs(d).mean()) if d.size else None,
            "max_abs_shift": float(np.abs(d).max()) if d.size else None,
            "pearson_vs_first": _pearson(base[ok], c[ok]),
        }
        per.append(entry)
    shifts = [e["mean_abs_shift"] for e in per[1:] if e["mean_abs_shift"] is not None]
    corr = [e["pearson_vs_first"] for e in per[1:] if e["pearson_vs_first"] is not None]
    return {
        "checkpoints": per,
        # The headline: how far the same pairs' cosines move at worst, on average over pairs.
        "max_mean_abs_shift": max(shifts) if shifts else 0.0,
        "min_pearson_vs_first": min(corr) if corr else 1.0,
    }


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    if x.size < 2 or x.std() == 0 or y.std() == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def plot_cosines(cosines: dict[str, np.ndarray], path: str | Path, title: str = "") -> str:
    """Overlaid histograms of each checkpoint's pair cosines, and each later one against the first (PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4))
    FigureCanvasAgg(fig)  # this figure's own canvas: pyplot's global backend is never touched
    ax1, ax2 = fig.subplots(1, 2)
    finite = [c[np.isfinite(c)] for c in cosines.values()]
    lo = min((f.min() for f in finite if f.size), default=-1.0)
    hi = max((f.max() for f in finite if f.size), default=1.0)
    bins = np.linspace(lo, hi, 41) if hi > lo else 10
    labels = list(cosines)
    for label, values in zip(labels, finite):
        ax1.hist(values, bins=bins, histtype="step", label=Path(label).name or label)
    ax1.set_xlabel("cosine(response a, response b)")
    ax1.set_ylabel("pairs")
    ax1.legend(fontsize=7)
    base = cosines[labels[0]]
    for label in labels[1:]:
        ax2.scatter(base, cosines[label], s=4, alpha=0.5, label=Path(label).name or label)
    if len(labels) > 1:
        ax2.plot([lo, hi], [lo, hi], color="grey", linewidth=0.8)
        ax2.legend(fontsize=7)
    ax2.set_xlabel(f"cosine under {Path(labels[0]).name or labels[0]}")
    ax2.set_ylabel("cosine under later checkpoint")
    fig.suptitle(title or "embedding stability")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return str(path)


def stability(
    store: Store,
    subset: str,
    models: list[str],
    *,
    device: str | None = STABILITY_DEFAULTS.device,
    dtype: str | None = STABILITY_DEFAULTS.dtype,
    max_length: int = STABILITY_DEFAULTS.max_length,
    batch_tokens: int | None = STABILITY_DEFAULTS.batch_tokens,
    plot: str | Path | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> StabilityReport:
    """Cosine distribution of the subset's pairs under each checkpoint and its drift; a PNG at `plot`.

    No file is written unless `plot` is given. `progress(done, total, model)` is called before
    each checkpoint is embedded.
    """
    from ..compute.models import load

    if len(models) < 1:
        raise UsageError("--models: give at least one checkpoint (CKPT1,CKPT2,...)")
    table = subset_table(store, subset, oriented=False, conversational=False)
    if table.num_rows == 0:
        raise UsageError(f"subset '{subset}' is empty")
    a, b = table.column("a").to_pylist(), table.column("b").to_pylist()
    cosines: dict[str, np.ndarray] = {}
    for i, m in enumerate(models):
        if progress:
            progress(i, len(models), m)
        loaded = load(m, "embed", device, dtype)
        cosines[m] = pair_cosines(loaded, a, b, max_length, batch_tokens)
        del loaded
    if progress:
        progress(len(models), len(models), "done")
    report = StabilityReport(subset=subset, n_pairs=table.num_rows, max_length=max_length, **summarise(cosines))
    if plot:
        report.plot = plot_cosines(cosines, plot, title=f"embedding stability: subset '{subset}'")
    return report
