"""Statistics: the t-interval against a hand computation, paired differences, label savings."""

from __future__ import annotations

import math

import pytest

from pairsift.compare.report import equivalent_budget, summarise, t_interval


def test_t_interval_by_hand():
    x = [0.5, 0.6, 0.7, 0.65]
    n, mean = 4, sum(x) / 4
    sd = math.sqrt(sum((v - mean) ** 2 for v in x) / (n - 1))
    half = 3.182446305284263 * sd / math.sqrt(n)  # t(0.975, 3)
    got = t_interval(x)
    assert got["n"] == 4 and got["mean"] == pytest.approx(mean) and got["sd"] == pytest.approx(sd)
    assert (got["lo"], got["hi"]) == (pytest.approx(mean - half), pytest.approx(mean + half))
    assert t_interval([0.3]) == {"n": 1, "mean": 0.3, "sd": None, "lo": None, "hi": None}
    same = t_interval([0.2, 0.2, 0.2])
    assert same["lo"] == pytest.approx(0.2) and same["hi"] == pytest.approx(0.2)


def test_paired_differences_and_savings():
    runs = []
    for seed in range(5):
        for budget, base in ((10, 0.50), (20, 0.60), (40, 0.70)):
            runs.append({"arm": "random", "budget": budget, "seed": seed, "accuracy": base + 0.01 * seed})
            runs.append({"arm": "easy", "budget": budget, "seed": seed, "accuracy": base + 0.05 + 0.01 * seed})
    cells = summarise(runs, ["easy", "random"], [10, 20, 40], ["accuracy"], "random")
    easy10 = next(c for c in cells if c["arm"] == "easy" and c["budget"] == 10)
    assert easy10["vs_baseline"]["mean"] == pytest.approx(0.05) and easy10["vs_baseline"]["wins"] == 5
    assert easy10["vs_baseline"]["lo"] == pytest.approx(0.05)  # identical per-seed differences
    # easy at 10 reaches 0.57, which the baseline reaches halfway (in log budget) from 10 to 20
    eq = easy10["baseline_equivalent"]
    assert eq["budget"] == pytest.approx(10 * 2 ** 0.5) and eq["label_saving"] == pytest.approx(1 - 1 / 2 ** 0.5)
    easy40 = next(c for c in cells if c["arm"] == "easy" and c["budget"] == 40)
    assert easy40["baseline_equivalent"] == {"budget": None, "bound": ">40", "label_saving": None}
    assert "vs_baseline" not in next(c for c in cells if c["arm"] == "random")


def test_equivalent_budget_lower_is_better():
    curve = [(10, 0.69), (100, 0.60)]
    assert equivalent_budget(0.645, curve, higher_is_better=False)["budget"] == pytest.approx(math.sqrt(1000))
    assert equivalent_budget(0.70, curve, higher_is_better=False)["bound"] == "<10"


def test_a_win_on_a_loss_is_a_lower_loss():
    """Per-seed wins follow the metric's direction: a lower loss wins, a higher accuracy wins."""
    runs = []
    for seed in range(4):
        runs.append({"arm": "random", "budget": 10, "seed": seed, "accuracy": 0.5, "loss": 0.69})
        lower = seed < 3  # three seeds with a lower loss and a higher accuracy, one with neither
        runs.append({"arm": "easy", "budget": 10, "seed": seed, "accuracy": 0.6 if lower else 0.4,
                     "loss": 0.60 if lower else 0.75})
    cells = summarise(runs, ["easy", "random"], [10], ["accuracy", "loss"], "random", lower_is_better=("loss",))
    by_metric = {c["metric"]: c["vs_baseline"] for c in cells if c["arm"] == "easy"}
    assert by_metric["accuracy"]["wins"] == 3 and by_metric["loss"]["wins"] == 3


def test_curve_with_one_budget_and_a_long_title(tmp_path):
    """One budget still shows its interval (an error bar), and a long title is wrapped."""
    from types import SimpleNamespace

    from pairsift.compare.plot import plot_curves

    runs = [{"arm": arm, "budget": 12, "seed": s, "accuracy": 0.5 + 0.05 * s + (arm == "easy") * 0.1,
             "loss": 0.69 - 0.01 * s} for arm in ("easy", "random") for s in range(3)]
    cells = summarise(runs, ["easy", "random"], [12], ["accuracy", "loss"], "random", lower_is_better=("loss",))
    learner = SimpleNamespace(metrics=("accuracy", "loss"), title=lambda: "dpo")
    out = plot_curves(cells, ["easy", "random"], learner, tmp_path / "c.png", title="x" * 60 + " " + "y" * 200)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table_header_counts_the_pairs_actually_scored():
    """TRL drops held-out pairs that do not fit --max-length: the header and the sampling margin
    use the pairs scored, not the pairs sampled."""
    from types import SimpleNamespace

    from pairsift.compare.report import format_table

    runs = [{"arm": arm, "budget": 12, "seed": s, "accuracy": 0.5, "loss": 0.69, "eval_pairs": 27}
            for arm in ("easy", "random") for s in range(2)]
    cells = summarise(runs, ["easy", "random"], [12], ["accuracy", "loss"], "random", lower_is_better=("loss",))
    learner = SimpleNamespace(metrics=("accuracy", "loss"), lower_is_better=("loss",))
    manifest = {"learner": {"name": "dpo"}, "heldout": {"pairs": 32, "prompts": 32, "scored": 27}, "seeds": [0, 1],
                "interval": "95% t"}
    header = format_table(cells, learner, "random", manifest).splitlines()[0]
    assert "held-out 32 pairs (27 scored)" in header
    assert f"±{1.96 * 0.5 / math.sqrt(27):.3f}" in header
    del manifest["heldout"]["scored"]
    assert f"±{1.96 * 0.5 / math.sqrt(32):.3f}" in format_table(cells, learner, "random", manifest)
