"""The labelling server on a real uvicorn socket (in a thread, and as `pairsift label serve`
processes): concurrent annotators lose and duplicate nothing; kill -9 loses no confirmed label."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter

import httpx
import pytest

from pairsift.label.table import read

from .live import Server, ThreadServer

HIDDEN = ("csrf", "subset", "pair_id", "round", "left", "shown_at")


def form_of(page: str) -> dict[str, str]:
    return {k: v for k, v in re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page) if k in HIDDEN}


def annotate(url: str, who: str, n: int, confirmed: list, errors: list, stop: threading.Event | None = None,
             retry_first: bool = False) -> None:
    """Label up to n pairs as `who`; record each label id the server confirmed (303)."""
    with httpx.Client(base_url=url, timeout=30) as c:
        for i in range(n):
            if stop is not None and stop.is_set():
                return
            try:
                page = c.get(f"/label/{who}")
                if 'id="done-page"' in page.text:
                    return
                data = {**form_of(page.text), "choice": ("left", "right", "tie", "both_bad", "skip")[i % 5]}
                for _ in range(2 if retry_first and i == 0 else 1):  # a retried POST must not duplicate
                    r = c.post(f"/label/{who}/submit", data=data)
                    if r.status_code == 303:
                        confirmed.append(r.headers["x-label-id"])
                    else:
                        errors.append((who, r.status_code, r.text[:200]))
            except httpx.HTTPError as e:  # the server died mid-request: this label is unconfirmed
                errors.append((who, type(e).__name__))
                if stop is not None:
                    return


def run_annotators(url: str, names: list[str], n: int, **kw) -> tuple[list, list]:
    confirmed, errors = [], []
    threads = [threading.Thread(target=annotate, args=(url, who, n, confirmed, errors), kwargs=kw) for who in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return confirmed, errors


def test_concurrent_annotators_lose_and_duplicate_nothing(labelled_store):
    server = ThreadServer(labelled_store, overlap=2)
    try:
        names = [f"ann{i}" for i in range(6)]
        confirmed, errors = run_annotators(server.url, names, 5, retry_first=True)
        assert errors == []
    finally:
        server.stop()
    labels = read(labelled_store, "u")
    ids = labels["label_id"].to_list()
    assert Counter(ids).most_common(1)[0][1] == 1  # no duplicate
    assert set(ids) == set(confirmed) and len(ids) == 30  # none lost, retries added nothing
    # overlap 2: no pair got more than two votes
    per_pair = Counter(labels.filter(labels["choice"] != "skip")["pair_id"].to_list())
    assert max(per_pair.values()) <= 2


@pytest.mark.slow
def test_two_server_processes_on_one_store(labelled_store):
    servers = [Server(labelled_store.uri), Server(labelled_store.uri)]
    try:
        results = []
        threads = []
        for k, s in enumerate(servers):
            out = ([], [])
            results.append(out)
            for i in range(3):
                t = threading.Thread(target=annotate, args=(s.url, f"s{k}w{i}", 4, out[0], out[1]))
                threads.append(t)
                t.start()
        for t in threads:
            t.join()
    finally:
        for s in servers:
            s.stop()
    confirmed = [x for c, _ in results for x in c]
    assert all(not e for _, e in results)
    ids = read(labelled_store, "u")["label_id"].to_list()
    assert len(ids) == len(set(ids)) == len(confirmed) == 24 and set(ids) == set(confirmed)


@pytest.mark.slow
@pytest.mark.parametrize("after_confirmed", [1, 7, 15])
def test_kill9_loses_no_confirmed_label(labelled_store, after_confirmed):
    store = labelled_store
    server = Server(store.uri)
    confirmed, errors = [], []
    stop = threading.Event()
    threads = [threading.Thread(target=annotate, args=(server.url, f"k{i}", 30, confirmed, errors, stop))
               for i in range(4)]
    for t in threads:
        t.start()
    while len(confirmed) < after_confirmed and any(t.is_alive() for t in threads):
        time.sleep(0.005)
    server.kill9()  # while the others are mid-submission
    stop.set()
    for t in threads:
        t.join()
    snapshot = list(confirmed)
    restarted = Server(store.uri)  # the store opens and serves again
    try:
        page = httpx.get(f"{restarted.url}/label/k0", timeout=30).text
        assert 'name="pair_id"' in page or 'id="done-page"' in page
    finally:
        restarted.stop()
    ids = read(store, "u")["label_id"].to_list()
    assert len(ids) == len(set(ids))
    assert set(snapshot) <= set(ids)  # every label the page was told is saved, is saved
