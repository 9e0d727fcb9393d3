"""`pairsift export NAME --push-to-hub REPO`: the subset as a Hugging Face Hub dataset repository.

The folder pushed is the Hub's own layout, built locally first (and kept with ``--out``):

* ``data/train-00000-of-00001.parquet`` — the export's rows (the same columns as
  ``pairsift export NAME --out FILE.parquet``: prompt/chosen/rejected and oriented features);
* ``README.md`` — the dataset card (:mod:`pairsift.select.card`) with the YAML header the Hub
  reads (``configs`` pointing at the data files, tags).

The upload is one ``huggingface_hub`` commit: ``create_repo(exist_ok=True)`` then
``create_commit`` with the two files, so a repository never holds half a push. The token and
endpoint are huggingface_hub's own (``HF_TOKEN``, ``HF_ENDPOINT``, ``huggingface-cli login``).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MissingDependency, StoreError, UsageError
from ..report import Report, plural
from .card import write_dataset_card

DATA_FILE = "data/train-00000-of-00001.parquet"


@dataclass
class HubReport(Report):
    subset: str
    repo: str
    url: str
    rows: int
    folder: str | None
    files: list[str]
    commit: str | None = None

    def summary(self) -> str:
        kept = f"; the folder pushed is kept in {self.folder}" if self.folder else ""
        return f"{plural(self.rows, 'pair')} of '{self.subset}' pushed to {self.url}{kept}"


def _check_repo(repo: str) -> None:
    parts = repo.split("/")
    if len(parts) != 2 or not all(parts):
        raise UsageError(f"--push-to-hub {repo!r}: give the dataset repository as OWNER/NAME")


def hub_folder(store: Any, name: str, folder: str | Path, repo: str) -> tuple[Any, list[str]]:
    """Write the Hub layout of subset `name` into `folder`; return (the export report, the files)."""
    from .export import export

    folder = Path(folder)
    report = export(store, name, folder / DATA_FILE, format="parquet")
    front = {
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}],
        "tags": ["pairsift", "preference", "dpo"] if report.labelled else ["pairsift", "preference", "unlabelled"],
    }
    hint = f'from datasets import load_dataset\nds = load_dataset("{repo}", split="train")'
    write_dataset_card(folder, store, name, rows=report.rows, columns=report.columns, labelled=report.labelled,
                       front_matter=front, load_hint=hint)
    return report, ["README.md", DATA_FILE]


def push_to_hub(store: Any, name: str, repo: str, *, folder: str | Path | None = None, private: bool = False,
                token: str | None = None, endpoint: str | None = None) -> HubReport:
    """Export subset `name` to the Hub dataset repository `repo` (OWNER/NAME) in one commit.

    `folder` keeps the folder pushed (default: a temporary one, removed after); `endpoint` and
    `token` default to huggingface_hub's (``HF_ENDPOINT``, ``HF_TOKEN`` or the saved login).
    """
    _check_repo(repo)
    try:
        from huggingface_hub import CommitOperationAdd, HfApi
    except ImportError as e:
        raise MissingDependency("--push-to-hub needs huggingface_hub: pip install 'pairsift[train]'") from e

    staging = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="pairsift-hub-"))
    try:
        if folder and staging.exists() and any(staging.iterdir()):
            raise UsageError(f"--out {staging}: the folder to push must be new or empty")
        report, files = hub_folder(store, name, staging, repo)
        api = HfApi(endpoint=endpoint, token=token)
        ops = [CommitOperationAdd(path_in_repo=f, path_or_fileobj=str(staging / f)) for f in files]
        try:
            url = api.create_repo(repo, repo_type="dataset", private=private, exist_ok=True)
            info = api.create_commit(repo, ops, repo_type="dataset",
                                     commit_message=f"pairsift: subset '{name}' ({plural(report.rows, 'pair')})")
        except Exception as e:  # the network boundary: HTTP errors, refused connections, offline mode
            raise StoreError(f"--push-to-hub {repo}: the upload failed: {type(e).__name__}: {e}") from e
        return HubReport(subset=name, repo=repo, url=str(url), rows=report.rows,
                         folder=str(staging) if folder else None, files=files,
                         commit=getattr(info, "oid", None))
    finally:
        if not folder:
            shutil.rmtree(staging, ignore_errors=True)
