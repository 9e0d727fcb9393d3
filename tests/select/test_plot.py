"""`pairsift plot`: the values drawn against a plain-Python reading of pair_features, and the PNG."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pairsift.errors import UsageError
from pairsift.select.plot import distributions, plot_subset
from pairsift.select.subsets import load_subset, select

from .strategy_data import EMB, LP, RM, random_world, write_world

COS = f"cos_{EMB}"


@pytest.fixture
def world(tmp_store):
    rows = write_world(tmp_store, random_world(np.random.default_rng(7), 40, ks=(2, 3, 4)))
    select(tmp_store, "easy", "e", embedding=EMB)
    select(tmp_store, "hard", "h", embedding=EMB)
    return tmp_store, rows


def _finite(values):
    return sorted(v for v in values if v is not None and math.isfinite(v))


def _reference(rows, members, column, gap):
    """The subset's values: each member's row, a gap multiplied by +1 (a chosen) / -1 (b chosen)."""
    by_id = {r["pair_id"]: r for r in rows}
    out = []
    for m in members:
        v = by_id[m["pair_id"]][column]
        if gap:
            if m["chosen_id"] is None:
                continue
            v = None if v is None else v * (1 if m["chosen_id"] == m["a_id"] else -1)
        out.append(v)
    return _finite(out)


def test_values_are_the_subsets_rows_oriented_chosen_minus_rejected(world):
    store, rows = world
    d = distributions(store, "e")
    assert list(d.panels) == [COS, "score_margin", f"dreward_{RM}", f"edit_norm_{LP}"]
    assert "DCRM" in d.skipped and "dcrm" in d.skipped["DCRM"]
    members = load_subset(store, "e")[1].to_pylist()
    for column, gap in ((COS, False), ("score_margin", True), (f"dreward_{RM}", True), (f"edit_norm_{LP}", False)):
        sub, pool = d.panels[column]
        assert sorted(sub.tolist()) == pytest.approx(_reference(rows, members, column, gap), rel=1e-6)
        if gap:
            want_pool = _finite([r[column] * r["label"] for r in rows
                                 if r[column] is not None and r["label"] is not None])
        else:
            want_pool = _finite([r[column] for r in rows])
        assert sorted(pool.tolist()) == pytest.approx(want_pool, rel=1e-6)
    # Score-labelled pairs oriented by their label: every score margin is positive.
    assert (d.panels["score_margin"][0] > 0).all() and (d.panels["score_margin"][1] > 0).all()
    assert d.n_pool == len(rows)


def test_vs_another_subset_and_explicit_columns(world, tmp_path):
    store, rows = world
    d = distributions(store, "e", vs="h", columns=[COS, "nope"])
    assert list(d.panels) == [COS] and d.skipped == {"nope": "not a column of pair_features"}
    hard = load_subset(store, "h")[1].to_pylist()
    assert sorted(d.panels[COS][1].tolist()) == pytest.approx(_reference(rows, hard, COS, False), rel=1e-6)
    assert d.pool.startswith("subset 'h' (hard")
    # REAL easy picks the smallest cosine per prompt, hard the largest: easy's median is lower.
    assert np.median(d.panels[COS][0]) < np.median(d.panels[COS][1])
    with pytest.raises(UsageError, match="nothing to plot"):
        distributions(store, "e", columns=["nope"])


def test_plot_writes_one_png_and_says_what_it_skipped(world, tmp_path):
    store, _ = world
    out = tmp_path / "figs" / "e.png"
    report = plot_subset(store, "e", out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report.columns == [COS, "score_margin", f"dreward_{RM}", f"edit_norm_{LP}"]
    assert "skipped DCRM" in report.summary()


def test_cli_plot(world, tmp_path):
    from click.testing import CliRunner

    from pairsift.cli import cli

    store, _ = world
    out = tmp_path / "p.png"
    res = CliRunner().invoke(cli, ["plot", "e", "--vs", "h", "--out", str(out), "--store", store.uri])
    assert res.exit_code == 0, res.output
    assert out.exists() and "against subset 'h'" in res.stdout
    res = CliRunner().invoke(cli, ["plot", "missing", "--out", str(out), "--store", store.uri])
    assert res.exit_code == 1 and "no subset named 'missing'" in res.output
