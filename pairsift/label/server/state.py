"""Who labels which pair next, and how far everyone is: the server's view of the labels.

The store's ``labels`` table is the truth; this is its in-memory index for one subset, rebuilt
from the table at start (and whenever another process wrote to it) and updated after each of
this server's commits. Pure Python: no web framework, no store access.

Assignment: an annotator gets the subset's pairs in rank order, skipping the pairs they already
labelled (skips included) and the pairs that already have `overlap` votes or are held by enough
other annotators to reach it. The pair shown is held (leased) for the annotator for
`lease_seconds`, so concurrent annotators get different pairs and a reload shows the same one.

Screen sides: whether response a or b is on the left is a hash of (subset, annotator, pair):
random across pairs and annotators, stable on reload, and recorded with the label.
"""

from __future__ import annotations

import time
from collections import defaultdict
from hashlib import blake2b

from ..items import Item
from ..table import VOTES


def left_side(subset: str, annotator: str, pair_id: str) -> str:
    """"a" or "b": which response this annotator sees on the left for this pair."""
    h = blake2b(f"{subset}\x1f{annotator}\x1f{pair_id}".encode(), digest_size=1).digest()[0]
    return "a" if h & 1 == 0 else "b"


class LabelState:
    def __init__(self, subset: str, items: list[Item], overlap: int = 1, lease_seconds: float = 600.0,
                 clock=time.monotonic):
        self.subset = subset
        self.items = items
        self.by_pair = {it.pair_id: it for it in items}
        self.overlap = overlap
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.leases: dict[str, dict[str, float]] = defaultdict(dict)  # pair -> annotator -> expiry
        self.load([])

    # ---- building from rows ------------------------------------------------------------------

    def load(self, rows: list[dict]) -> None:
        """Replace everything known with these label rows (the subset's rows of the table)."""
        self.rows: dict[str, dict] = {}  # label_id -> row
        self.keyed: dict[tuple[str, str], list[dict]] = defaultdict(list)  # (pair, annotator) -> rows
        self.current: dict[tuple[str, str], dict] = {}  # (pair, annotator) -> the label that counts
        self.voters: dict[str, set[str]] = defaultdict(set)  # pair -> annotators with a vote
        self.done: dict[str, set[str]] = defaultdict(set)  # annotator -> pairs labelled (skips too)
        for row in rows:
            self.apply(row)

    def apply(self, row: dict) -> None:
        """Add a label row or replace it (same label_id, e.g. undone)."""
        if row["subset"] != self.subset or row["pair_id"] not in self.by_pair:
            return
        key = (row["pair_id"], row["annotator"])
        old = self.rows.get(row["label_id"])
        if old is not None:
            self.keyed[key].remove(old)
        self.rows[row["label_id"]] = row
        self.keyed[key].append(row)
        self._recount(key)

    def _recount(self, key: tuple[str, str]) -> None:
        pair, who = key
        live = [r for r in self.keyed[key] if r["undone_at"] is None]
        best = max(live, key=lambda r: (r["round"], r["created_at"])) if live else None
        if best is None:
            self.current.pop(key, None)
            self.done[who].discard(pair)
            self.voters[pair].discard(who)
            return
        self.current[key] = best
        self.done[who].add(pair)
        if best["choice"] in VOTES:
            self.voters[pair].add(who)
        else:
            self.voters[pair].discard(who)

    # ---- questions the pages ask ---------------------------------------------------------------

    def round_for(self, pair_id: str, annotator: str) -> int:
        """The round of this annotator's next label of this pair (0, or one past the last)."""
        rows = self.keyed.get((pair_id, annotator))
        return max(r["round"] for r in rows) + 1 if rows else 0

    def open_for(self, pair_id: str, annotator: str, now: float) -> bool:
        """May this annotator label this pair now?"""
        if pair_id in self.done[annotator]:
            return False
        held = sum(1 for who, until in self.leases.get(pair_id, {}).items() if who != annotator and until > now)
        return len(self.voters[pair_id]) + held < self.overlap

    def next_for(self, annotator: str, pair_id: str | None = None) -> Item | None:
        """The pair to show this annotator (and hold it for them); `pair_id` asks for one."""
        now = self.clock()
        choice = None
        if pair_id is not None and pair_id in self.by_pair and pair_id not in self.done[annotator]:
            choice = pair_id  # asked for explicitly (after an undo): shown even if others filled it
        if choice is None:
            for pid, holders in self.leases.items():
                if holders.get(annotator, 0) > now and pid not in self.done[annotator]:
                    choice = pid  # the pair already shown to them: stable on reload
                    break
        if choice is None:
            choice = next((it.pair_id for it in self.items if self.open_for(it.pair_id, annotator, now)), None)
        for holders in self.leases.values():
            holders.pop(annotator, None)
        if choice is None:
            return None
        self.leases[choice][annotator] = now + self.lease_seconds
        return self.by_pair[choice]

    def release(self, annotator: str) -> None:
        for holders in self.leases.values():
            holders.pop(annotator, None)

    def last_label(self, annotator: str) -> dict | None:
        """The annotator's most recent label that still counts (what undo takes back)."""
        mine = [r for (pair, who), r in self.current.items() if who == annotator]
        return max(mine, key=lambda r: r["created_at"]) if mine else None

    def progress(self, annotator: str | None = None) -> dict:
        complete = sum(1 for it in self.items if len(self.voters[it.pair_id]) >= self.overlap)
        out = {
            "pairs": len(self.items),
            "complete": complete,
            "overlap": self.overlap,
            "annotators": sorted(((who, len(p)) for who, p in self.done.items() if p), key=lambda x: (-x[1], x[0])),
        }
        if annotator is not None:
            mine = len(self.done[annotator])
            open_ = sum(1 for it in self.items
                        if it.pair_id not in self.done[annotator] and len(self.voters[it.pair_id]) < self.overlap)
            out.update(done=mine, total=mine + open_)
        return out
