"""Group commit: the labels submitted while a commit is in flight go into the next one.

Request handlers hand rows to one writer thread and wait; the thread takes everything queued
(up to `max_batch`), commits the new labels as one keyed compare-and-swap append (rows whose
label_id is already stored are dropped; :func:`..table.insert_new`) and the undos as one
update-only merge-insert, and only then completes each waiter, so a page is told "saved" only for a label that is committed:
kill -9 at any moment loses no confirmed label. Under load, many labels share one commit
instead of queueing one commit each (BENCHMARKS.md, issue 11). A failed commit fails every
label in it; none is confirmed.

Every commit adds a small fragment, and reading the keys (and an undo's merge) touches every
fragment, so every `compact_every` commits the writer compacts the table's files (a Lance
rewrite: same rows, same versions history, nothing deleted; a concurrent writer's
compare-and-swap simply retries after it).
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future

import pyarrow as pa

from ...store import Store
from ...store.commit import committed
from ..table import insert_new, open_labels, rows_table, update_existing

_STOP = object()


class LabelWriter:
    def __init__(self, store: Store, max_batch: int = 256, compact_every: int = 32):
        self.store = store
        open_labels(store)  # create it now, not on the first label
        self.max_batch = max(1, int(max_batch))
        self.compact_every = compact_every
        self._since_compaction = 0
        self.versions: set[int] = set()  # table versions this writer committed
        self.commits = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="pairsift-label-writer", daemon=True)
        self._thread.start()

    def insert(self, row: dict) -> Future:
        """Commit a new label (a no-op if its label_id is already there)."""
        return self._put("insert", row)

    def undo(self, row: dict) -> Future:
        """Commit `row` (an existing label with undone_at set)."""
        return self._put("undo", row)

    def close(self) -> None:
        """Commit what is queued, then stop the thread."""
        self._queue.put(_STOP)
        self._thread.join()

    def _put(self, kind: str, row: dict) -> Future:
        fut: Future = Future()
        self._queue.put((kind, row, fut))
        return fut

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch, stop = [first], False
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list) -> None:
        inserts = [(row, fut) for kind, row, fut in batch if kind == "insert"]
        undos = [(row, fut) for kind, row, fut in batch if kind == "undo"]
        for group, write in ((inserts, self.commit_inserts), (undos, self.commit_undos)):
            if not group:
                continue
            try:
                version = write(rows_table(row for row, _ in group))
            except Exception as e:  # noqa: BLE001 - the page shows "not saved"; nothing is confirmed
                for _, fut in group:
                    fut.set_exception(e)
                continue
            if version is not None:  # None: every label was there already, nothing committed
                self.versions.add(version)
                self.commits += 1
                self._since_compaction += 1
            for _, fut in group:
                fut.set_result(version)
        if self.compact_every and self._since_compaction >= self.compact_every:
            self._compact()

    def _compact(self) -> None:
        self._since_compaction = 0
        try:
            ds = open_labels(self.store)
            if ds.optimize.compact_files().fragments_removed:
                committed("compact labels")
                self.versions.add(ds.version)
        except Exception:  # noqa: BLE001 - e.g. a conflict with another writer: compact next time
            return

    # The two commits; a benchmark baseline overrides them.

    def commit_inserts(self, rows: pa.Table) -> int | None:
        return insert_new(self.store, rows)

    def commit_undos(self, rows: pa.Table) -> int | None:
        return update_existing(self.store, rows)
