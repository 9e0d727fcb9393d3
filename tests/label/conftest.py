"""Real stores with an unlabelled subset `u` (see helpers.build_store), built once per test run
and copied for each test (a store is a directory of Lance datasets)."""

from __future__ import annotations

import shutil

import pytest

from pairsift.store import open_store

from .helpers import build_store


@pytest.fixture(scope="session")
def _templates(tmp_path_factory):
    built = {}

    def get(kind: str):
        if kind not in built:
            root = tmp_path_factory.mktemp(f"label-{kind}")
            store = open_store(root / "store")
            build_store(store, root, payloads=kind == "hostile", scored=kind == "scored")
            built[kind] = root / "store"
        return built[kind]

    return get


def _copy(template, tmp_path):
    shutil.copytree(template, tmp_path / "store")
    return open_store(tmp_path / "store")


@pytest.fixture
def labelled_store(_templates, tmp_path):
    """6 prompts x 3 responses: 18 unlabelled pairs in subset 'u', a third of the prompts chats."""
    return _copy(_templates("plain"), tmp_path)


@pytest.fixture
def hostile_store(_templates, tmp_path):
    """Like labelled_store, with script / event-handler / markup payloads in every text."""
    return _copy(_templates("hostile"), tmp_path)


@pytest.fixture
def scored_store(_templates, tmp_path):
    """Like labelled_store, but every response has a distinct score: pairs oriented by score."""
    return _copy(_templates("scored"), tmp_path)
