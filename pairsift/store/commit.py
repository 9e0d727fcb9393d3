"""Commits: the one place that moves a table to a new version, and how two writers stay apart.

Lance commits a version by writing its manifest with put-if-not-exists and rebases a writer
that lost the race on top of the winner when their operations are "compatible". Two of its
defaults are unsafe for us (both reproduced in tests/store/test_commit.py):

- **Creating a table is an Overwrite**, and an Overwrite that finds the table already there
  replaces it: two writers creating one table both succeed and the last one wins.
  :func:`create_table` therefore commits an EMPTY version 1 through a commit lock that refuses
  every version but 1, so a late creator fails instead of replacing, and racing creators can
  only overwrite each other's empty version 1 (which loses nothing).
- **Two Appends never conflict**: with content-hash keys, two jobs adding the same rows both
  land them. Lance's ``merge_insert`` "insert if not exists" does not help either (four
  concurrent inserts of the same 100 keys leave 400 rows). :func:`try_append` commits new
  fragments as a Lance ``Merge`` of (every current fragment + ours) at the version the caller
  checked: a ``Merge`` conflicts with any concurrent Append, Merge, Delete, Update or
  compaction, so the commit only lands if nothing changed since the check: a compare-and-swap.
  Callers loop: re-check what changed, drop their duplicates, try again.

Every commit calls :func:`committed`, the crash-test hook.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..errors import StoreError

if TYPE_CHECKING:  # lance loads on first use: `import pairsift` stays light
    import lance
    import pyarrow as pa

#: How many times a compare-and-swap commit is retried before the writer gives up.
MAX_ATTEMPTS = 200

_commits = 0


def committed(what: str) -> None:
    """Count one commit of this process; the crash-test hooks act on the count.

    ``PAIRSIFT_TEST_KILL_AFTER_COMMIT=N`` kills the process (SIGKILL, no cleanup) right after its
    Nth commit; ``PAIRSIFT_TEST_PAUSE_AFTER_COMMIT=N:SECONDS`` sleeps there instead, so a test
    can start a second job in the gap. Read at each commit, never at import.
    """
    global _commits
    _commits += 1
    kill = os.environ.get("PAIRSIFT_TEST_KILL_AFTER_COMMIT")
    if kill and int(kill) == _commits:
        os.kill(os.getpid(), signal.SIGKILL)
    pause = os.environ.get("PAIRSIFT_TEST_PAUSE_AFTER_COMMIT")
    if pause:
        n, _, seconds = pause.partition(":")
        if int(n) == _commits:
            time.sleep(float(seconds or 1))


def backoff(attempt: int) -> None:
    """Sleep a little, more after each lost race, with jitter so racers spread out."""
    time.sleep(random.uniform(0, min(0.5, 0.005 * (attempt + 1) ** 1.5)))


# ---- errors -----------------------------------------------------------------------------------

_RUST_LOCATION = re.compile(r",?\s*/[^\s,]*\.rs:\d+:\d+\s*$")


def short_error(e: BaseException) -> str:
    """Lance's message without its Rust source location or second lines."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    text = _RUST_LOCATION.sub("", text)
    for prefix in ("LanceError(IO): ", "LanceError(Arrow): ", "Encountered internal error. "):
        text = text.replace(prefix, "")
    return text.strip()


def is_not_found(e: BaseException) -> bool:
    return isinstance(e, (ValueError, OSError)) and "was not found" in str(e)


def is_panic(e: BaseException) -> bool:
    """Lance raises pyo3's PanicException (a BaseException) on corrupt files."""
    return type(e).__name__ == "PanicException"


def write_error(what: str, e: BaseException) -> StoreError:
    """One line for a failed write: disk full, read-only filesystem, permissions, network."""
    return StoreError(f"cannot write {what}: {short_error(e)}")


# ---- creating a table ------------------------------------------------------------------------


class _NotVersionOne(Exception):
    pass


@contextlib.contextmanager
def _only_version_one(version: int) -> Iterator[None]:
    if version != 1:
        raise _NotVersionOne(f"table already exists (would commit version {version})")
    yield


def exists(uri: str, storage_options: dict | None) -> bool:
    import lance

    try:
        lance.dataset(uri, storage_options=storage_options)
    except BaseException as e:
        if is_not_found(e):
            return False
        raise
    return True


def _exists_quietly(uri: str, storage_options: dict | None) -> bool:
    try:
        return exists(uri, storage_options)
    except Exception:  # noqa: BLE001 - damaged or unreachable: the caller reports its own error
        return False


def create_table(uri: str, schema: pa.Schema, storage_options: dict | None, what: str) -> bool:
    """Create the table empty at version 1 unless it exists; True if this call created it.

    Never replaces an existing table (see the module docstring)."""
    import lance

    try:
        lance.LanceDataset.commit(
            uri,
            lance.LanceOperation.Overwrite(schema, []),
            commit_lock=_only_version_one,
            storage_options=storage_options,
        )
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            raise
        if _exists_quietly(uri, storage_options):
            return False
        raise write_error(what, e) from None
    committed(f"create {what}")
    return True


# ---- compare-and-swap append -------------------------------------------------------------------


def try_append(
    ds: lance.LanceDataset, fragments: list, storage_options: dict | None, what: str
) -> lance.LanceDataset | None:
    """Commit `fragments` on top of exactly `ds` (its version must still be the latest).

    Returns the new dataset, or None when another commit got there first (re-check, retry).
    """
    import lance
    from lance.commit import CommitConflictError

    current = [f.metadata for f in ds.get_fragments()]
    top = max((f.id for f in current), default=-1)
    new = []
    for i, frag in enumerate(fragments):
        frag.id = top + 1 + i  # Lance checks Merge fragments by id: ours must not reuse one
        new.append(frag)
    try:
        out = lance.LanceDataset.commit(
            ds.uri,
            lance.LanceOperation.Merge(current + new, ds.schema),
            read_version=ds.version,
            storage_options=storage_options,
        )
    except CommitConflictError as e:
        if e.retryable:
            return None
        raise write_error(what, e) from None
    except OSError as e:
        if "conflict" in str(e).lower():
            return None
        raise write_error(what, e) from None
    committed(f"append {what}")
    return out
