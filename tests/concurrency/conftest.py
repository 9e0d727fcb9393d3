"""A real S3 protocol server (moto) on 127.0.0.1 for the object-store variants."""

from __future__ import annotations

import socket
import uuid

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    port = _free_port()
    server = moto_server.ThreadedMotoServer(port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    creds = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **creds).create_bucket(Bucket="pairsift-conc")
    yield {**creds, "region": "us-east-1", "endpoint": endpoint, "allow_http": "true"}
    server.stop()


@pytest.fixture(params=["local", "s3"])
def any_store(request, tmp_path):
    """An empty store: a local directory, or a fresh prefix on the S3 server."""
    from pairsift.store import Store

    if request.param == "local":
        return Store(tmp_path / "store")
    opts = request.getfixturevalue("s3_server")
    return Store(f"s3://pairsift-conc/{uuid.uuid4().hex}", opts)
