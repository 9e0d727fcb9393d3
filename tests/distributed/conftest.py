"""Fixtures of the distributed tests: ONE local Ray cluster per test session, tiny models built once,
an S3-compatible server (moto) on 127.0.0.1, and comparison helpers."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from tests.conftest import REPO


@pytest.fixture(scope="session")
def ray_address():
    """A local Ray cluster for the whole session (start-up ~5-25 s here); its address for subprocess drivers.

    4 logical CPUs on this 2-core machine: two model actors (0.5 CPU each), Ray Data's read tasks
    and a second driver's job all fit, so no test waits on another's resources.
    """
    ray = pytest.importorskip("ray", reason="Ray tests need pairsift[distributed]")
    pytest.importorskip("ray.data", reason="Ray tests need pairsift[distributed]")
    started = False
    if not ray.is_initialized():
        ray.init(num_cpus=4, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
        started = True
    yield ray.get_runtime_context().gcs_address
    if started:
        ray.shutdown()


@pytest.fixture(scope="session")
def models(models_dir):
    """Tiny random-weight models (GPT-2 LM, GPT-2 reward model, BERT encoder), saved once."""
    pytest.importorskip("torch")
    from tests.compute.helpers import tiny_bert_dir, tiny_gpt2_dir, tiny_reward_dir

    return {"lm": tiny_gpt2_dir(models_dir), "rm": tiny_reward_dir(models_dir), "bert": tiny_bert_dir(models_dir)}


@pytest.fixture(scope="session")
def s3(s3_server):
    """The session's moto S3 server (tests/conftest.py) as (endpoint, credentials-as-environment)."""
    endpoint = s3_server["endpoint"]
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": "true"}
    return endpoint, env


def run_driver(code: str, env: dict | None = None, timeout: int = 420) -> subprocess.CompletedProcess:
    """A second driver process (it joins the session's cluster through the address it is given)."""
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          check=False, env={**os.environ, **(env or {})})


def run_cli(args: list[str], env: dict | None = None, timeout: int = 420) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pairsift.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def assert_same_table(a: pl.DataFrame, b: pl.DataFrame, key: str, atol: float = 1e-5) -> None:
    """Same keys (each once), same values: exact for ids, ints, strings and lists; floats within atol."""
    assert a.get_column(key).n_unique() == a.height, "duplicate keys"
    assert sorted(a.columns) == sorted(b.columns)
    a, b = a.sort(key), b.select(a.columns).sort(key)
    assert a.height == b.height and a.get_column(key).equals(b.get_column(key))
    for c in a.columns:
        x, y = a.get_column(c), b.get_column(c)
        assert x.is_null().equals(y.is_null()), c
        if x.dtype.is_float():
            np.testing.assert_allclose(x.to_numpy(), y.to_numpy(), atol=atol, equal_nan=True, err_msg=c)
        elif isinstance(x.dtype, pl.Array):
            keep = ~x.is_null()
            np.testing.assert_allclose(x.filter(keep).to_numpy(), y.filter(keep).to_numpy(), atol=atol, err_msg=c)
        else:
            assert x.equals(y), c
