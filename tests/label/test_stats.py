"""`label stats`: counts, time per label, agreement, agreement by cosine, the plot."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from pairsift.cli import cli
from pairsift.errors import UsageError
from pairsift.label.importing import import_labels
from pairsift.label.stats import label_stats

from . import reference
from .helpers import EMB, members


def _labels(store, tmp_path, seed=0):
    """Three annotators over every pair (random votes, some skips); returns {pair: [votes]}."""
    rng = np.random.default_rng(seed)
    ms = members(store)
    rows, votes = [], {}
    for m in ms:
        for who in ("x", "y", "z"):
            choice = str(rng.choice(["a", "b", "tie", "both_bad", "skip"], p=[0.4, 0.3, 0.1, 0.1, 0.1]))
            rows.append({"pair_id": m["pair_id"], "label": choice, "annotator": who, "seconds": float(rng.integers(2, 30))})
            if choice != "skip":
                votes.setdefault(m["pair_id"], []).append(choice)
    path = tmp_path / "labels.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    import_labels(store, "u", path)
    return rows, votes


def test_counts_speed_and_agreement_match_reference(labelled_store, tmp_path):
    rows, votes = _labels(labelled_store, tmp_path)
    rep = label_stats(labelled_store, "u")
    assert rep.labels == len(rows) and rep.pairs == 18 and [a.annotator for a in rep.annotators] == ["x", "y", "z"]
    for a in rep.annotators:
        mine = [r for r in rows if r["annotator"] == a.annotator]
        assert a.labels == len(mine) and sum(a.choices.values()) == len(mine)
        assert a.seconds_median == pytest.approx(float(np.median([r["seconds"] for r in mine])))
    ratings = [votes.get(m["pair_id"], []) for m in members(labelled_store)]
    assert rep.raw_agreement == pytest.approx(reference.raw_agreement(ratings))
    assert rep.fleiss_kappa == pytest.approx(reference.fleiss_kappa(ratings))
    assert rep.cohen_kappa is None and len(rep.pairwise) == 3  # three annotators: Fleiss + pairwise Cohen
    by = {(r["annotator"], r["pair_id"]): r["label"] for r in rows if r["label"] != "skip"}
    xy = sorted({p for w, p in by if w == "x"} & {p for w, p in by if w == "y"})
    want = reference.cohen_kappa([by[("x", p)] for p in xy], [by[("y", p)] for p in xy])
    got = next(p for p in rep.pairwise if (p["a"], p["b"]) == ("x", "y"))
    assert got["pairs"] == len(xy) and got["cohen_kappa"] == pytest.approx(want)
    # by cosine: equal-count bins over the pairs with two votes, each bin's agreement per the reference
    assert rep.embedding == EMB and sum(b.pairs for b in rep.cosine_bins) == rep.pairs_multi
    assert all(b.lo <= b.cos_mean <= b.hi for b in rep.cosine_bins)
    assert "agreement by cos_fake" in rep.summary()


def test_two_annotators_get_cohen(labelled_store, tmp_path):
    ms = members(labelled_store)
    x = ["a", "a", "b", "tie", "a", "b"] * 3
    y = ["a", "b", "b", "tie", "a", "a"] * 3
    rows = [{"pair_id": m["pair_id"], "label": v, "annotator": w} for m, vx, vy in zip(ms, x, y)
            for w, v in (("x", vx), ("y", vy))]
    (tmp_path / "l.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    import_labels(labelled_store, "u", tmp_path / "l.jsonl")
    rep = label_stats(labelled_store, "u")
    assert rep.cohen_kappa == pytest.approx(reference.cohen_kappa(x, y))


def test_plot_only_where_asked(labelled_store, tmp_path, monkeypatch):
    _labels(labelled_store, tmp_path)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    res = CliRunner().invoke(cli, ["label", "stats", "u", "--store", labelled_store.uri, "--json", "--bins", "3"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["plot"] is None and os.listdir(work) == []  # no file unless asked
    png = tmp_path / "out" / "agreement.png"
    assert label_stats(labelled_store, "u", plot=png).plot == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and os.listdir(work) == []
    with pytest.raises(UsageError):
        label_stats(labelled_store, "u", embedding="nope")


def test_no_labels_yet(labelled_store, tmp_path):
    rep = label_stats(labelled_store, "u")
    assert rep.labels == 0 and rep.fleiss_kappa is None and rep.cosine_bins == []
    with pytest.raises(UsageError, match="nothing to plot"):
        label_stats(labelled_store, "u", plot=tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
