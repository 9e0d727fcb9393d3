"""Shared fixtures: a real LanceDB store under tmp_path, and the ../shared data when present."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PAIRSIFT_SHARED", REPO.parent / "shared"))
HH_TEST = SHARED / "data" / "hh-rlhf-harmless-base" / "test.jsonl.gz"
ALPACA_DEV = SHARED / "data" / "alpaca-eval-multiresponse" / "dev.jsonl.gz"
STORIES = SHARED / "models" / "stories260K"
HH_SAMPLE = REPO / "pairsift" / "sample_data" / "hh_harmless_sample.jsonl"
SMOL_SOURCE = SHARED / "models" / "smollm2-135m-instruct"
#: SmolLM2 converted once per machine, outside the repository (the product never needs it).
SMOL_CACHE = Path(os.environ.get("PAIRSIFT_MODEL_CACHE", Path.home() / ".cache" / "pairsift")) / "smollm2-135m-instruct"


def shared_file(path: Path) -> Path:
    """Skip the calling test cleanly when a ../shared file is absent."""
    if not path.exists():
        pytest.skip(f"{path} not present (../shared is optional)")
    return path


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory):
    """Where the tiny models (pairsift.compute.tiny) are built: once per test run, then reused."""
    return tmp_path_factory.mktemp("models")


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


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face folder, converted once with ../shared's to_hf.py
    (an existing conversion at the cache path is reused)."""
    script = shared_file(SMOL_SOURCE / "to_hf.py")
    if not (SMOL_CACHE / "model.safetensors").exists():
        pytest.importorskip("gguf")
        SMOL_CACHE.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(script), str(SMOL_CACHE)], check=True)
    return SMOL_CACHE


#: The bucket every object-store test writes under (each test picks its own prefix).
S3_BUCKET = "pairsift-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 protocol server (moto) on 127.0.0.1 with bucket S3_BUCKET, once per test run;
    yields the store's storage options (credentials, region, endpoint, allow_http)."""
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    port = free_port()
    server = moto_server.ThreadedMotoServer(port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    creds = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **creds).create_bucket(Bucket=S3_BUCKET)
    yield {**creds, "region": "us-east-1", "endpoint": endpoint, "allow_http": "true"}
    server.stop()
