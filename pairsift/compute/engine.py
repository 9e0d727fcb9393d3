"""The batching engine under `pairsift embed` and `pairsift score`.

What makes it fast, and why each piece is there:

- **Tokenise once** into a :class:`Ragged` (one flat int32 array plus offsets): no per-batch
  tokenizer calls, no Python lists on the hot path; padding a batch is two numpy gathers.
- **Sort by length, batch by a token budget** (:func:`plan_batches`): each batch is
  ``rows x longest`` <= ``batch_tokens``, so short texts run in big batches, long texts in small
  ones, and almost no compute is spent on padding. Longest batches run first, so an
  out-of-memory budget fails in the first seconds, not after an hour.
- **Overlap host and device**: a background thread pads, converts and pins the next batches
  while the device runs the current one; results are copied back asynchronously and consumed one
  batch late, so the device never waits for the host (on CUDA). :func:`background` does the same
  for whole windows (read + tokenise the next window during the current one).
- **bf16 weights, SDPA, inference mode** are set up by :mod:`pairsift.compute.models`; a batch
  without padding is run with ``attention_mask=None`` so SDPA can take its fastest kernel.
- **Chunked, resumable writes** (:class:`ChunkWriter`): results are committed in chunks of a few
  thousand rows from a writer thread, one atomic, keyed Lance commit each (ids already in the
  output table, or committed meanwhile by a concurrent run, are dropped at commit), so a job
  killed at any point (``kill -9`` included) resumes with no duplicate and no lost row, and two
  runs of one set at once store each id once.

The engine knows nothing about the store or the task: a *forward* function turns a padded batch
into per-row tensors; :mod:`.embed` and :mod:`.score` provide the forwards and the I/O.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

#: Default token budget per batch (rows x padded length). Large on GPU; on CPU, past a few
#: thousand tokens bigger batches only add cache misses.
GPU_BATCH_TOKENS = 65_536
CPU_BATCH_TOKENS = 8_192


def default_batch_tokens(device: str) -> int:
    return GPU_BATCH_TOKENS if str(device).startswith("cuda") else CPU_BATCH_TOKENS


@dataclass
class Ragged:
    """Variable-length int sequences stored flat: row i is ``values[offsets[i]:offsets[i+1]]``."""

    values: np.ndarray  # int32 [total]
    offsets: np.ndarray  # int64 [n + 1]

    @classmethod
    def from_lists(cls, rows: list) -> Ragged:
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        values = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int32, count=int(offsets[-1]))
        return cls(values, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def row(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    def padded(self, idx: np.ndarray, pad_id: int, multiple: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Rows `idx` right-padded to a common length: (ids [B, L] int64, lengths [B])."""
        lens = self.lengths[idx]
        width = int(lens.max()) if len(idx) else 0
        width = -(-width // multiple) * multiple
        out = np.full((len(idx), width), pad_id, dtype=np.int64)
        total = int(lens.sum())
        row = np.repeat(np.arange(len(idx)), lens)
        starts = np.repeat(np.cumsum(lens) - lens, lens)
        col = np.arange(total) - starts
        src = np.repeat(self.offsets[idx], lens) + col
        out[row, col] = self.values[src]
        return out, lens


def plan_batches(
    lengths: np.ndarray,
    batch_tokens: int,
    max_rows: int | None = None,
    multiple: int = 1,
    min_fill: float = 0.5,
) -> list[np.ndarray]:
    """Index batches, longest first, each with ``rows x padded longest <= batch_tokens``.

    A batch also ends early where lengths fall below `min_fill` x its longest, once it holds an
    eighth of the budget: on small or very spread inputs this keeps padding under ~half without
    making batches tiny. A sequence longer than the budget still gets a batch of its own.
    """
    lengths = np.asarray(lengths)
    order = np.argsort(-lengths, kind="stable")
    sorted_len = lengths[order]
    batches, i, n = [], 0, len(order)
    while i < n:
        width = max(1, -(-int(sorted_len[i]) // multiple) * multiple)
        rows = max(1, batch_tokens // width)
        if max_rows:
            rows = min(rows, max_rows)
        floor_rows = max(1, -(-batch_tokens // (8 * width)))
        if rows > floor_rows:
            short = np.flatnonzero(sorted_len[i + floor_rows : i + rows] < min_fill * width)
            if len(short):
                rows = floor_rows + int(short[0])
        batches.append(order[i : i + rows])
        i += rows
    return batches


_DONE = object()


def background(it: Iterable, depth: int = 2) -> Iterator:
    """Iterate `it` in a thread, `depth` items ahead; exceptions re-raise in the consumer."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work():
        try:
            for item in it:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_DONE)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            q.put(e)

    t = threading.Thread(target=work, daemon=True, name="pairsift-prefetch")
    t.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


class Engine:
    """Run a forward function over token sequences in sorted, token-budgeted batches."""

    def __init__(
        self,
        device: str = "cpu",
        batch_tokens: int | None = None,
        pad_id: int = 0,
        max_rows: int | None = None,
        prefetch: int = 3,
    ):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.batch_tokens = batch_tokens or default_batch_tokens(device)
        self.pad_id = pad_id
        self.max_rows = max_rows
        self.prefetch = prefetch
        # Tensor cores like multiples of 8; on CPU padding is pure waste.
        self.multiple = 8 if self.cuda else 1
        self.tokens = 0  # real (non-padding) tokens processed
        self.padded_tokens = 0

    def _collate(self, seqs: Ragged, batches: list[np.ndarray], extras: dict[str, np.ndarray], prepare):
        torch = self.torch
        for idx in batches:
            ids, lens = seqs.padded(idx, self.pad_id, self.multiple)
            batch = {"input_ids": torch.from_numpy(ids), "lengths": torch.from_numpy(lens)}
            if not (lens == ids.shape[1]).all():
                mask = np.arange(ids.shape[1])[None, :] < lens[:, None]
                batch["attention_mask"] = torch.from_numpy(mask.astype(np.int64))
            rows = {k: np.ascontiguousarray(v[idx]) for k, v in extras.items()}
            for k, v in rows.items():
                batch[k] = torch.from_numpy(v)
            if prepare is not None:
                for k, v in prepare(lens, rows).items():
                    batch[k] = torch.from_numpy(np.ascontiguousarray(v))
            if self.cuda:
                batch = {k: t.pin_memory() for k, t in batch.items()}
            yield idx, batch, int(lens.sum()), ids.size

    def run(
        self,
        forward: Callable[[dict], dict],
        seqs: Ragged,
        extras: dict[str, np.ndarray] | None = None,
        prepare: Callable[[np.ndarray, dict], dict[str, np.ndarray]] | None = None,
    ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """Yield ``(indices into seqs, {output name: numpy [B, ...]})`` per batch.

        `forward` gets a dict with ``input_ids`` [B, L] (right-padded), ``lengths`` [B],
        ``attention_mask`` [B, L] only when the batch has padding, and `extras` rows, all on the
        device; it returns per-row tensors. `prepare(lengths, extras rows)` runs on the host in
        the collate thread and returns more arrays for the batch (any shape), e.g. gather indices
        the forward would otherwise compute on the device with a host sync.
        """
        torch = self.torch
        batches = plan_batches(seqs.lengths, self.batch_tokens, self.max_rows, self.multiple)
        pending: deque = deque()
        with torch.inference_mode():
            for idx, batch, real, padded in background(self._collate(seqs, batches, extras or {}, prepare), self.prefetch):
                batch = {k: t.to(self.device, non_blocking=True) for k, t in batch.items()}
                out = forward(batch)
                if self.cuda:
                    out = {k: v.to("cpu", non_blocking=True) for k, v in out.items()}
                    event = torch.cuda.Event()
                    event.record()
                else:
                    event = None
                pending.append((idx, out, event))
                self.tokens += real
                self.padded_tokens += padded
                # Consume one batch late so the copy back overlaps the next forward.
                while len(pending) > (1 if self.cuda else 0):
                    yield self._finish(*pending.popleft())
            while pending:
                yield self._finish(*pending.popleft())

    @staticmethod
    def _finish(idx, out, event):
        if event is not None:
            event.synchronize()
        return idx, {k: v.numpy() for k, v in out.items()}


class ChunkWriter:
    """Commit Arrow rows in chunks from a background thread; one atomic table commit per chunk.

    ``write(pa.Table)`` must be one atomic commit (e.g. :meth:`pairsift.compute.sets.SetTable.add`)
    and may return how many of the rows it committed (fewer when some were already there); the
    count is :attr:`committed`. Rows handed to :meth:`add` are committed once ``chunk_rows`` have
    gathered, and the rest on :meth:`close`. :meth:`abort` drops what is not committed (what a
    crash would do): the ids skipped on the next run are exactly those committed.
    """

    def __init__(self, write: Callable, chunk_rows: int = 4096, on_commit: Callable[[int], None] | None = None):
        import pyarrow as pa

        self._pa = pa
        self.write = write
        self.chunk_rows = chunk_rows
        self.on_commit = on_commit
        self.committed = 0
        self.chunks = 0
        self._pending: list = []
        self._pending_rows = 0
        self._q: queue.Queue = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, daemon=True, name="pairsift-writer")
        self._thread.start()

    def _work(self):
        while True:
            table = self._q.get()
            if table is None:
                return
            if self._error is not None:
                continue
            try:
                done = self.write(table)
                done = done if isinstance(done, int) else table.num_rows
                self.committed += done
                self.chunks += 1
                if self.on_commit:
                    self.on_commit(done)
            except BaseException as e:  # noqa: BLE001 - re-raised in the producer
                self._error = e

    def _check(self):
        if self._error is not None:
            raise self._error

    def add(self, rows) -> None:
        """Queue a pa.Table / RecordBatch of output rows."""
        self._check()
        if rows.num_rows == 0:
            return
        self._pending.append(rows)
        self._pending_rows += rows.num_rows
        if self._pending_rows >= self.chunk_rows:
            self._flush()

    def _flush(self):
        if not self._pending:
            return
        pa = self._pa
        parts = [p if isinstance(p, pa.Table) else pa.Table.from_batches([p]) for p in self._pending]
        self._q.put(pa.concat_tables(parts).combine_chunks())
        self._pending, self._pending_rows = [], 0

    def close(self) -> int:
        """Commit what is left, wait for the thread, and return the rows committed."""
        self._flush()
        self._q.put(None)
        self._thread.join()
        self._check()
        return self.committed

    def __enter__(self) -> ChunkWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Commit the rest on success; on any exception (Ctrl-C too) drop what is uncommitted."""
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def abort(self) -> None:
        self._pending, self._pending_rows = [], 0
        self._error = self._error or RuntimeError("aborted")
        self._q.put(None)
        self._thread.join()
