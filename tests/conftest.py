"""Shared fixtures: a real LanceDB store under tmp_path, and the ../shared data when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PAIRSIFT_SHARED", REPO.parent / "shared"))
HH_TEST = SHARED / "data" / "hh-rlhf-harmless-base" / "test.jsonl.gz"
ALPACA_DEV = SHARED / "data" / "alpaca-eval-multiresponse" / "dev.jsonl.gz"
STORIES = SHARED / "models" / "stories260K"
HH_SAMPLE = REPO / "pairsift" / "sample_data" / "hh_harmless_sample.jsonl"


def shared_file(path: Path) -> Path:
    """Skip the calling test cleanly when a ../shared file is absent."""
    if not path.exists():
        pytest.skip(f"{path} not present (../shared is optional)")
    return path


@pytest.fixture
def tmp_store(tmp_path):
    from pairsift.store import open_store

    return open_store(tmp_path / "store")


@pytest.fixture
def hh_test():
    return shared_file(HH_TEST)


@pytest.fixture
def alpaca_dev():
    return shared_file(ALPACA_DEV)


@pytest.fixture
def stories_model():
    return shared_file(STORIES)
