"""The labelling page in a real browser: headless Chromium from the system packages, driven by
Playwright. Skipped cleanly when /usr/bin/chromium or playwright is absent."""

from __future__ import annotations

import os
import shutil

import pytest

from pairsift.label.server.state import left_side
from pairsift.label.table import effective, read

from .helpers import PAYLOADS, members
from .live import Server

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("PAIRSIFT_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.skip(f"no browser at {CHROMIUM} (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def server(labelled_store):
    s = Server(labelled_store.uri)
    yield s
    s.stop()


def pair_on(page) -> str:
    return page.locator('input[name="pair_id"]').get_attribute("value")


def progress(page) -> int:
    return int(page.locator("#done").inner_text())


def label_with_keys(page, key: str) -> str:
    """Choose with a number key, submit with Enter; returns the pair labelled."""
    pid = pair_on(page)
    page.keyboard.press(key)
    assert page.locator(f'input[name="choice"][data-key="{key}"]').is_checked()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    return pid


def test_keyboard_labelling_reload_and_undo(browser, server, labelled_store):
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(f"{server.url}/label/alice")
    keys = ["1", "2", "3", "4", "5"]
    done = [label_with_keys(page, k) for k in keys]
    assert len(set(done)) == 5 and progress(page) == 5
    page.reload()
    assert progress(page) == 5 and pair_on(page) not in done  # progress persists across reloads
    # what was stored: the number keys mean left, right, tie, both bad, skip
    rows = {r["pair_id"]: r for r in effective(read(labelled_store, "u")).to_dicts()}
    for pid, key in zip(done, keys):
        left = left_side("u", "alice", pid)
        want = {"1": left, "2": "b" if left == "a" else "a", "3": "tie", "4": "both_bad", "5": "skip"}[key]
        assert rows[pid]["choice"] == want and rows[pid]["left"] == left and rows[pid]["annotator"] == "alice"
    # a rationale, submitted with Ctrl+Enter from the text box
    page.keyboard.press("1")
    page.locator("textarea[name=rationale]").fill("clearer & shorter <b>")
    pid = pair_on(page)
    with page.expect_navigation():
        page.keyboard.press("Control+Enter")
    assert effective(read(labelled_store, "u")).filter(pair_id=pid)["rationale"].to_list() == ["clearer & shorter <b>"]
    # U undoes the last label and shows that pair again
    with page.expect_navigation():
        page.keyboard.press("u")
    page.wait_for_load_state()
    assert pair_on(page) == pid and progress(page) == 5
    # Enter without a choice submits nothing
    before = read(labelled_store, "u").height
    page.keyboard.press("Enter")
    page.wait_for_timeout(300)
    assert pair_on(page) == pid and read(labelled_store, "u").height == before
    ctx.close()


def test_two_annotators_in_two_browser_contexts(browser, server, labelled_store):
    a_ctx, b_ctx = browser.new_context(), browser.new_context()
    a, b = a_ctx.new_page(), b_ctx.new_page()
    a.goto(f"{server.url}/")
    a.fill('input[name="name"]', "alice")
    with a.expect_navigation():
        a.keyboard.press("Enter")
    assert a.url.endswith("/label/alice")
    b.goto(f"{server.url}/label/bob")
    seen = {"alice": [], "bob": []}
    for i in range(4):  # interleaved, both sessions open at once
        seen["alice"].append(label_with_keys(a, "1"))
        seen["bob"].append(label_with_keys(b, "2"))
    assert not set(seen["alice"]) & set(seen["bob"])  # overlap 1: never the same pair
    assert progress(a) == 4 and progress(b) == 4
    eff = effective(read(labelled_store, "u"))
    assert sorted(eff["annotator"].to_list()) == ["alice"] * 4 + ["bob"] * 4
    a.reload()
    team = a.locator("table.team").inner_text()
    assert "alice" in team and "bob" in team
    a_ctx.close()
    b_ctx.close()


def test_xss_payloads_do_not_execute(browser, hostile_store, tmp_path):
    guide = tmp_path / "guide.md"
    guide.write_text("# Rules\n<script>window.__xss = 7</script>\n<img src=x onerror=\"window.__xss=8\">\n")
    server = Server(hostile_store.uri, "--guidelines", str(guide))
    try:
        ctx = browser.new_context()
        page = ctx.new_page()
        dialogs, errors = [], []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{server.url}/label/alice")
        page.locator("details.guidelines summary").click()
        shown = []
        for _ in range(len(members(hostile_store))):
            assert page.evaluate("window.__xss") is None
            shown.append(page.locator("main").inner_text())
            label_with_keys(page, "3")
        assert page.evaluate("window.__xss") is None and dialogs == [] and errors == []
        text = "\n".join(shown)
        for payload in PAYLOADS:  # shown as text, character for character
            assert payload in text
        assert "<script>window.__xss = 7</script>" in text
        ctx.close()
    finally:
        server.stop()
