"""No global side effects: plotting leaves matplotlib's global state alone.

One fresh interpreter draws every figure the product makes outside a command (stability
cosines, the eval curve, a subset against its pool) and reports, after each, whether pyplot was
imported and whether the backend changed: a fresh process is the only place a global side
effect shows, and one process for all of them keeps the check cheap.
"""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_plots_do_not_touch_pyplot_or_the_backend(tmp_path):
    pytest.importorskip("matplotlib")
    outs = {name: tmp_path / f"{name}.png" for name in ("stability", "eval", "subset")}
    code = f"""
import sys
import numpy as np
import matplotlib
before = matplotlib.rcParams._get_backend_or_none()
outs = {({k: str(v) for k, v in outs.items()})!r}

def state(name):
    print(name, "pyplot" if "matplotlib.pyplot" in sys.modules else "no-pyplot",
          matplotlib.rcParams._get_backend_or_none() == before)

from pairsift.train.stability import plot_cosines
plot_cosines({{"a": np.array([0.1, 0.5, np.nan]), "b": np.array([0.2, 0.4, 0.3])}}, outs["stability"])
state("stability")

from pairsift.train.evaluate import EvalReport
from pairsift.train.plot import plot_eval_curve
rows = [dict(model="m", step=s, n_pairs=4, loss=0.69 - s / 100, reward_accuracy=0.5 + s / 20,
             reward_margin_beta=s / 50) for s in (1, 2, 3)]
plot_eval_curve(EvalReport(subset="held", ref_model="ref", beta=0.1, n_pairs_in_subset=4, results=rows), outs["eval"])
state("eval")

from pairsift.select.plot import draw
rng = np.random.default_rng(0)
draw({{"cos_x": (rng.normal(size=50), rng.normal(size=500)), "score_margin": (rng.random(50), rng.random(500))}},
     outs["subset"], "title")
state("subset")
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [w for name in outs for w in (name, "no-pyplot", "True")]
    for out in outs.values():
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
