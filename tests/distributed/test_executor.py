"""Choosing the executor (no Ray needed): options, dispatch under torchrun, the install line."""

from __future__ import annotations

import builtins

import pytest
from click.testing import CliRunner

from pairsift.cli.main import cli
from pairsift.compute.distributed import compute_job
from pairsift.errors import MissingDependency, UsageError


def test_ray_options_need_the_ray_executor(tmp_path):
    res = CliRunner().invoke(cli, ["pairs", "--store", str(tmp_path / "s"), "--workers", "2"])
    assert res.exit_code == 1 and "--ray-address and --workers need --executor ray" in res.output
    res = CliRunner().invoke(cli, ["embed", "--store", str(tmp_path / "s"), "--executor", "spark"])
    assert res.exit_code == 2 and "spark" in res.output


def test_compute_job_dispatch(monkeypatch):
    from pairsift.compute.distributed.ranks import embed_ranks, score_logprobs_ranks
    from pairsift.compute.embed import embed
    from pairsift.compute.score import score_rewards

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert compute_job("embed") is embed and compute_job("reward", "local") is score_rewards
    ray_fn = compute_job("logprobs", "ray", ray="cfg")
    assert ray_fn.func.__name__ == "score_logprobs_ray" and ray_fn.keywords == {"ray": "cfg"}
    # Launched by torchrun / accelerate launch: each rank takes its share.
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert compute_job("embed") is embed_ranks and compute_job("logprobs") is score_logprobs_ranks
    with pytest.raises(UsageError, match="without a launcher"):
        compute_job("embed", "ray")


def test_missing_ray_names_the_extra(monkeypatch):
    from pairsift.compute.distributed.cluster import require_ray

    real_import = builtins.__import__

    def no_ray(name, *a, **k):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(MissingDependency, match=r"pip install 'pairsift\[distributed\]'"):
        require_ray()


def test_help_does_not_import_ray():
    import subprocess
    import sys

    code = ("import sys\nfrom click.testing import CliRunner\nfrom pairsift.cli.main import cli\n"
            "CliRunner().invoke(cli, ['embed', '--help'])\nprint('ray' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_parts_hold_whole_prompts_in_storage_order():
    import numpy as np

    from pairsift.features.ray_pairs import _assign

    rng = np.random.default_rng(0)
    ks = rng.integers(1, 7, size=300)
    pk = np.repeat(rng.permutation(np.arange(300, dtype=np.uint64) * 7919), ks)  # prompt keys, not sorted
    off = np.arange(len(pk), dtype=np.int64)  # stored in this order
    off[rng.random(len(pk)) < 0.05] = -1  # some responses have no vector
    part = _assign(pk, off, 4)
    assert set(part) == {0, 1, 2, 3}
    for p in np.unique(pk):  # a prompt never spans two parts
        assert len(set(part[pk == p])) == 1
    # parts follow storage order: a part's prompts sit before the next part's
    first = {p: off[(pk == p) & (off >= 0)].min() for p in np.unique(pk) if (off[(pk == p)] >= 0).any()}
    by_part = [max(v for p, v in first.items() if part[pk == p][0] == q) for q in range(4)]
    assert by_part == sorted(by_part)
    cost = np.array([sum(k + k * (k - 1) // 2 for k in np.unique(pk[part == q], return_counts=True)[1])
                     for q in range(4)])
    assert cost.max() < 1.2 * cost.mean()  # about equal work
    assert len(_assign(np.empty(0, np.uint64), np.empty(0, np.int64), 3)) == 0
