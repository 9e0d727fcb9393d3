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


def test_prompt_key_ranges_cover_the_key_space():
    from pairsift.features.ray_pairs import _bounds, _range_filter

    edges = _bounds(7)
    assert edges[0] is None and edges[-1] is None and len(edges) == 8
    inner = [int(e, 16) for e in edges[1:-1]]
    assert inner == sorted(inner) and all(len(e) == 16 for e in edges[1:-1])
    assert _bounds(1) == [None, None]
    # A 32-hex id compares with a 16-hex bound like its 64-bit key does.
    sql, expr = _range_filter("8000000000000000", None)
    assert sql == "prompt_id >= '8000000000000000'"
    import polars as pl

    ids = pl.DataFrame({"prompt_id": ["7fffffffffffffff" + "f" * 16, "8000000000000000" + "0" * 16]})
    assert ids.filter(expr)["prompt_id"].to_list() == ["8000000000000000" + "0" * 16]
