"""Fixtures for compare: a store whose preferences follow a hidden linear reward on the embeddings
(so a reward head can learn it), with a held-out split; and the SmolLM2 model, converted once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SHARED, shared_file
from tests.select.strategy_data import random_world, write_world

SMOL_SOURCE = SHARED / "models" / "smollm2-135m-instruct"
#: Converted once per machine, outside the repository (the product never needs it).
SMOL_CACHE = Path(os.environ.get("PAIRSIFT_MODEL_CACHE", Path.home() / ".cache" / "pairsift")) / "smollm2-135m-instruct"


def signal_world(seed: int, n_prompts: int, ks=(2, 3, 4), dim: int = 8, noise: float = 0.3, single: bool = False):
    """A random world whose scores are w·vec + noise for a hidden w: orientation is learnable."""
    rng = np.random.default_rng(seed)
    world = random_world(rng, n_prompts, ks=(2,) if single else ks, dim=dim, tie_prob=0.0, nan_prob=0.0)
    w = np.random.default_rng(1000 + seed).normal(size=dim)
    for prompt in world:
        for r in prompt:
            r["score"] = float(np.dot(w, r["vec"]) + noise * rng.normal())
    return world


@pytest.fixture
def world_store(tmp_store):
    """Multi-response world (2-4 responses per prompt), split 25% held out."""
    from pairsift.compare.split import make_split

    rows = write_world(tmp_store, signal_world(0, 120))
    make_split(tmp_store, holdout=0.25, seed=0)
    return tmp_store, rows


@pytest.fixture
def single_store(tmp_store):
    """One pair per prompt (HH-like), split 25% held out."""
    from pairsift.compare.split import make_split

    rows = write_world(tmp_store, signal_world(1, 200, single=True))
    make_split(tmp_store, holdout=0.25, seed=0)
    return tmp_store, rows


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face folder, converted once with ../shared's to_hf.py."""
    script = shared_file(SMOL_SOURCE / "to_hf.py")
    if not (SMOL_CACHE / "model.safetensors").exists():
        pytest.importorskip("gguf")
        SMOL_CACHE.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(script), str(SMOL_CACHE)], check=True)
    return SMOL_CACHE
