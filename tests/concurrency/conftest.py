"""Stores on a local directory or on the session's moto S3 server (tests/conftest.py)."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import S3_BUCKET


@pytest.fixture(params=["local", "s3"])
def any_store(request, tmp_path):
    """An empty store: a local directory, or a fresh prefix on the S3 server."""
    from pairsift.store import Store

    if request.param == "local":
        return Store(tmp_path / "store")
    opts = request.getfixturevalue("s3_server")
    return Store(f"s3://{S3_BUCKET}/{uuid.uuid4().hex}", opts)
