"""A real store with an unlabelled subset `u` (see helpers.build_store)."""

from __future__ import annotations

import pytest

from .helpers import build_store


@pytest.fixture
def labelled_store(tmp_store, tmp_path):
    """6 prompts x 3 responses: 18 unlabelled pairs in subset 'u', a third of the prompts chats."""
    build_store(tmp_store, tmp_path)
    return tmp_store


@pytest.fixture
def hostile_store(tmp_store, tmp_path):
    """Like labelled_store, with script / event-handler / markup payloads in every text."""
    build_store(tmp_store, tmp_path, payloads=True)
    return tmp_store
