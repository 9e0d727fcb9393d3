"""The labelling server's routes through Starlette's TestClient (a real store, no browser)."""

from __future__ import annotations

import html
import re

import pytest
from markupsafe import escape
from starlette.testclient import TestClient

from pairsift.errors import UsageError
from pairsift.label.server.app import make_app
from pairsift.label.server.config import ServeConfig
from pairsift.label.server.state import left_side
from pairsift.label.table import effective, read

from .helpers import PAYLOADS, members

BASE = "http://127.0.0.1:8765"
HIDDEN = ("csrf", "subset", "pair_id", "round", "left", "shown_at")


def client(store, **config) -> TestClient:
    return TestClient(make_app(store, "u", ServeConfig(**config)), base_url=BASE, follow_redirects=False)


def form_of(page: str) -> dict[str, str]:
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page))
    return {k: html.unescape(v) for k, v in fields.items() if k in HIDDEN}


def progress_of(page: str) -> tuple[int, int]:
    done = re.search(r'id="done">(\d+)<', page).group(1)
    total = re.search(r'id="total">(\d+)<', page).group(1)
    return int(done), int(total)


def label(c: TestClient, who: str, choice: str = "left", **override) -> tuple:
    page = c.get(f"/label/{who}")
    assert page.status_code == 200, page.text
    data = {**form_of(page.text), "choice": choice, "rationale": "", **override}
    return page, c.post(f"/label/{who}/submit", data=data)


def rows(store) -> list[dict]:
    return read(store, "u").to_dicts()


def test_label_flow_records_sides_and_confirms_after_commit(labelled_store):
    store = labelled_store
    with client(store) as c:
        assert c.get("/healthz").text == "ok"
        page, r = label(c, "alice", "left", rationale="clearer")
        assert r.status_code == 303 and r.headers["location"] == "/label/alice"
        f = form_of(page.text)
        saved = rows(store)  # committed before the 303 came back
        assert len(saved) == 1 and saved[0]["label_id"] == r.headers["x-label-id"]
        row = saved[0]
        # "A is better" is the LEFT response; stored in terms of the pair's a/b
        assert row["left"] == f["left"] == left_side("u", "alice", f["pair_id"])
        assert row["choice"] == row["left"] and row["rationale"] == "clearer" and row["origin"] == "web"
        assert row["seconds"] is not None and 0 <= row["seconds"] < 60
        # the right side, tie, both bad, skip
        for choice in ("right", "tie", "both_bad", "skip"):
            page, r = label(c, "alice", choice)
            assert r.status_code == 303
            f = form_of(page.text)
            got = next(x for x in rows(store) if x["pair_id"] == f["pair_id"])["choice"]
            want = {"right": "b" if f["left"] == "a" else "a"}.get(choice, choice)
            assert got == want
        assert progress_of(c.get("/label/alice").text) == (5, 18)


def test_sides_random_across_pairs_and_annotators_but_stable_on_reload(labelled_store):
    ms = members(labelled_store)
    sides = {(who, m["pair_id"]): left_side("u", who, m["pair_id"]) for who in ("alice", "bob", "carol") for m in ms}
    assert set(sides.values()) == {"a", "b"}
    assert any(sides[("alice", m["pair_id"])] != sides[("bob", m["pair_id"])] for m in ms)
    with client(labelled_store) as c:
        first, again = c.get("/label/alice").text, c.get("/label/alice").text
        assert form_of(first)["pair_id"] == form_of(again)["pair_id"] and form_of(first)["left"] == form_of(again)["left"]
        # the left column shows the response the form says is on the left
        f = form_of(first)
        m = next(m for m in ms if m["pair_id"] == f["pair_id"])
        texts = {r["response_id"]: r["text"] for r in labelled_store.dataset("responses").to_table().to_pylist()}
        left_text = texts[m["a_id"] if f["left"] == "a" else m["b_id"]]
        left_html = first.split('id="response-a"')[1].split("</section>")[0]
        assert html.escape(left_text) in left_html


@pytest.mark.parametrize(
    "change, status",
    [
        ({"pair_id": "0" * 32}, 404),  # unknown pair
        ({"subset": "other"}, 400),  # wrong subset
        ({"choice": "a"}, 400),  # not a screen choice
        ({"choice": ""}, 400),
        ({"round": "x"}, 400),
        ({"round": "7"}, 409),  # not this pair's round
        ({"csrf": "f" * 64}, 403),
        ({"csrf": None}, 403),
        ({"extra": "1"}, 400),
        ({"rationale": "x" * 5001}, 400),
    ],
)
def test_invalid_posts_are_refused_and_write_nothing(labelled_store, change, status):
    with client(labelled_store) as c:
        page = c.get("/label/alice")
        data = {**form_of(page.text), "choice": "left"}
        for k, v in change.items():
            if v is None:
                data.pop(k)
            else:
                data[k] = v
        r = c.post("/label/alice/submit", data=data)
        assert r.status_code == status, r.text
    assert not labelled_store.has_table("labels") or rows(labelled_store) == []


def test_wrong_side_wrong_annotator_and_encoding_refused(labelled_store):
    with client(labelled_store) as c:
        f = form_of(c.get("/label/alice").text)
        flipped = {**f, "choice": "left", "left": "b" if f["left"] == "a" else "a"}
        assert c.post("/label/alice/submit", data=flipped).status_code == 400
        # bob cannot post with alice's CSRF token
        assert c.post("/label/bob/submit", data={**f, "choice": "left"}).status_code == 403
        assert c.post("/label/alice/submit", json={**f, "choice": "left"}).status_code == 415
        assert c.post("/label/alice/submit", content=b"a=" + b"x" * 70_000,
                      headers={"content-type": "application/x-www-form-urlencoded"}).status_code == 413
        assert c.post("/label/bad%20name/submit", data={**f, "choice": "left"}).status_code == 404
        assert c.get("/label/alice/submit").status_code == 405  # state changes only by POST
    assert not labelled_store.has_table("labels") or rows(labelled_store) == []


def test_retried_post_is_not_duplicated(labelled_store):
    with client(labelled_store) as c:
        page = c.get("/label/alice")
        data = {**form_of(page.text), "choice": "tie"}
        ids = {c.post("/label/alice/submit", data=data).headers["x-label-id"] for _ in range(3)}
    assert len(ids) == 1 and len(rows(labelled_store)) == 1


def test_undo_takes_back_the_last_label_and_shows_the_pair_again(labelled_store):
    store = labelled_store
    with client(store) as c:
        _, r1 = label(c, "alice", "left")
        page2, r2 = label(c, "alice", "right")
        f2 = form_of(page2.text)
        u = c.post("/label/alice/undo", data={"csrf": f2["csrf"]})
        assert u.status_code == 303 and u.headers["location"] == f"/label/alice?pair={f2['pair_id']}"
        again = c.get(u.headers["location"]).text
        f3 = form_of(again)
        assert f3["pair_id"] == f2["pair_id"] and f3["round"] == "1"
        undone = next(x for x in rows(store) if x["label_id"] == r2.headers["x-label-id"])
        assert undone["undone_at"] is not None
        _, r3 = label(c, "alice", "skip")  # relabel the same pair: a new row, round 1
        assert r3.headers["x-label-id"] not in (r1.headers["x-label-id"], r2.headers["x-label-id"])
        assert c.post("/label/alice/undo", data={"csrf": "nope"}).status_code == 403
    first = next(x for x in rows(store) if x["label_id"] == r1.headers["x-label-id"])
    eff = effective(read(store, "u"))
    assert sorted(eff["label_id"].to_list()) == sorted([first["label_id"], r3.headers["x-label-id"]])
    assert len(rows(store)) == 3  # the audit log keeps the undone label


def test_overlap_leases_and_progress(labelled_store):
    store = labelled_store
    n = len(members(store))
    with client(store, overlap=2) as c:
        a, b, d = (form_of(c.get(f"/label/{w}").text)["pair_id"] for w in ("ann1", "ann2", "ann3"))
        assert a == b != d  # two annotators may hold the same pair, the third gets another
        for who in ("ann1", "ann2"):
            label(c, who, "left")
        page = c.get("/label/ann3").text
        assert form_of(page)["pair_id"] not in (a,)  # the pair has its 2 labels
        assert "1 / 18 pairs complete" in page and "(2 labels each)" in page
    with client(store, overlap=1) as c:
        seen = [form_of(c.get(f"/label/w{i}").text)["pair_id"] for i in range(4)]
        assert len(set(seen)) == 4  # concurrent annotators get different pairs
    # everything labelled -> the done page
    with client(store, overlap=1) as c:
        for _ in range(n):
            page = c.get("/label/solo").text
            if 'id="done-page"' in page:
                break
            f = form_of(page)
            c.post("/label/solo/submit", data={**f, "choice": "tie"})
        assert 'id="done-page"' in c.get("/label/solo").text


def test_untrusted_text_is_escaped_everywhere(hostile_store, tmp_path):
    guide = tmp_path / "guide.md"
    guide.write_text("# Rules\nBe **fair**.\n\n<script>window.__xss=9</script> [x](javascript:alert(1))\n")
    with client(hostile_store, guidelines=str(guide)) as c:
        pages = []
        for i in range(len(members(hostile_store))):
            page, r = label(c, "alice", "left")
            pages.append(page)
        for page in pages:
            body = page.text
            assert "<script>window.__xss" not in body and "<img src=x" not in body and "<svg onload" not in body
            assert "onerror=" not in body.replace("onerror=&#34;", "").replace("onerror=&quot;", "")
            assert "</textarea><script>" not in body
            assert body.count("<script") == 1  # the page's own, nonce'd
            nonce = re.search(r"<script nonce=\"([^\"]+)\">", body).group(1)
            assert f"'nonce-{nonce}'" in page.headers["content-security-policy"]
        joined = "".join(p.text for p in pages)
        for payload in PAYLOADS:
            assert str(escape(payload)) in joined  # shown, as text
        assert "<strong>fair</strong>" in pages[0].text and 'href="javascript' not in pages[0].text
    # a hostile annotator name is refused, not reflected
    with client(hostile_store) as c:
        r = c.get("/label/%3Cscript%3E")
        assert r.status_code == 404 and "<script>" not in r.text.split("<script nonce")[0]
        start = c.get("/?name=%3Cb%3Ex").text
        assert "<b>x" not in start


def test_access_token_host_and_cross_site(labelled_store):
    with pytest.raises(UsageError, match="--token"):
        from pairsift.label.server.security import check_binding

        check_binding("0.0.0.0", None)
    with client(labelled_store) as c:
        assert c.get("/", headers={"host": "evil.example:8765"}).status_code == 400  # DNS rebinding
        f = form_of(c.get("/label/alice").text)
        r = c.post("/label/alice/submit", data={**f, "choice": "left"}, headers={"sec-fetch-site": "cross-site"})
        assert r.status_code == 403
    token = "t" * 24
    app = make_app(labelled_store, "u", ServeConfig(host="0.0.0.0", token=token))
    with TestClient(app, base_url="http://10.1.2.3:8765", follow_redirects=False) as c:
        assert c.get("/label/alice").status_code == 401
        assert c.get("/label/alice?token=wrong").status_code == 401
        r = c.get(f"/label/alice?token={token}")
        assert r.status_code == 303 and r.headers["location"] == "/label/alice"
        assert "HttpOnly" in r.headers["set-cookie"] and "SameSite=Strict" in r.headers["set-cookie"]
        assert c.get("/label/alice").status_code == 200  # the cookie
    with TestClient(app, base_url="http://10.1.2.3:8765") as c:
        assert c.get("/healthz", headers={"authorization": f"Bearer {token}"}).status_code == 200
    assert not labelled_store.has_table("labels") or rows(labelled_store) == []


def test_security_headers(labelled_store):
    with client(labelled_store) as c:
        r = c.get("/label/alice")
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer" and "frame-ancestors 'none'" in r.headers[
            "content-security-policy"]
        assert "http://" not in r.text.split("<body>")[0]  # nothing loaded from elsewhere


def test_server_sees_labels_other_processes_write(labelled_store, tmp_path):
    import json
    import time

    from pairsift.label.importing import import_labels

    with client(labelled_store, refresh_seconds=0.05) as c:
        shown = form_of(c.get("/label/alice").text)["pair_id"]
        path = tmp_path / "l.jsonl"
        path.write_text(json.dumps({"pair_id": shown, "label": "a", "annotator": "alice"}) + "\n")
        import_labels(labelled_store, "u", path)  # written behind the server's back
        for _ in range(400):  # the server polls the table; wait until it has seen the new label
            page = c.get("/label/alice").text
            if progress_of(page)[0] == 1:
                break
            time.sleep(0.05)
        assert progress_of(page)[0] == 1 and form_of(page)["pair_id"] != shown


def test_cli_refuses_an_open_bind_without_token_and_a_missing_subset(labelled_store):
    from click.testing import CliRunner

    from pairsift.cli import cli

    res = CliRunner().invoke(cli, ["label", "serve", "u", "--store", labelled_store.uri, "--host", "0.0.0.0"])
    assert res.exit_code == 1 and res.output.startswith("Error: --host 0.0.0.0") and "--token" in res.output
    res = CliRunner().invoke(cli, ["label", "serve", "nope", "--store", labelled_store.uri, "--port", "0"])
    assert res.exit_code == 1 and res.output.startswith("Error: ") and "nope" in res.output
