"""The routes of the labelling page.

``GET /`` start page (name field, progress) · ``GET /label/{annotator}`` the next pair for
that annotator (``?pair=ID``: that pair) · ``POST /label/{annotator}/submit`` one label ·
``POST /label/{annotator}/undo`` take back the annotator's last label · ``GET /healthz``.

A POST is validated completely before anything is written (unknown pair, wrong subset, bad
choice, bad side, stale round, missing or wrong CSRF token: 4xx, nothing written); a label is
confirmed (303 to the next pair, ``X-Label-Id`` header) only after its commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qsl, quote

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from ...errors import UsageError
from ...store import Store
from ..importing import ANNOTATOR_RE
from ..items import load_items
from ..table import TABLE, label_id, read
from .config import ServeConfig
from .markdown import render as render_markdown
from .security import Csrf, Guard, csp, is_loopback
from .state import LabelState, left_side
from .writer import LabelWriter

#: Screen choices (what the form posts) and their keys; left/right become a/b by the side shown.
SCREEN = [("left", "1", "A is better"), ("right", "2", "B is better"), ("tie", "3", "Tie"),
          ("both_bad", "4", "Both bad"), ("skip", "5", "Skip")]
SCREEN_CHOICES = {c for c, _, _ in SCREEN}
FIELDS = {"csrf", "subset", "pair_id", "round", "left", "choice", "rationale", "shown_at"}
MAX_BODY = 64 * 1024
MAX_RATIONALE = 5000
_NAME = re.compile(ANNOTATOR_RE)


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=True,  # every text shown is untrusted data: escaped, never markup
        undefined=jinja2.StrictUndefined,
    )


async def read_form(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body (bounded), each field at most once."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise Refused(415, "send the form as application/x-www-form-urlencoded")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise Refused(413, "form too large")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=len(FIELDS) + 2)
    except (UnicodeDecodeError, ValueError):
        raise Refused(400, "malformed form") from None
    form: dict[str, str] = {}
    for k, v in pairs:
        if k in form:
            raise Refused(400, f"field {k!r} given twice")
        if k not in FIELDS:
            raise Refused(400, f"unknown field {k!r}")
        form[k] = v
    return form


def make_app(store: Store, subset: str, config: ServeConfig | None = None, *,
             writer: LabelWriter | None = None) -> Guard:
    """The labelling app for `subset`. Reads the subset and its labels now (errors surface before
    the server binds); the writer thread starts here and stops when the app shuts down."""
    config = config or ServeConfig()
    if config.overlap < 1:
        raise UsageError(f"--overlap must be >= 1, got {config.overlap}")
    guidelines_html = None
    if config.guidelines:
        path = Path(config.guidelines)
        if not path.is_file():
            raise UsageError(f"--guidelines {path}: no such file")
        try:
            guidelines_html = render_markdown(path.read_text(encoding="utf-8-sig"))
        except UnicodeDecodeError:
            raise UsageError(f"--guidelines {path}: not UTF-8 text") from None
    _, items = load_items(store, subset)
    state = LabelState(subset, items, config.overlap, config.lease_seconds)
    state.load(read(store, subset).to_dicts())
    writer = writer or LabelWriter(store, config.max_batch)
    env = _env()
    csrf = Csrf()
    pending = {"local": 0}  # commits applied since a refresh started reading

    def page(name: str, status: int = 200, **ctx) -> HTMLResponse:
        nonce = secrets.token_urlsafe(16)
        html = env.get_template(name).render(nonce=nonce, subset=subset, guidelines=guidelines_html, **ctx)
        return HTMLResponse(html, status_code=status, headers={"content-security-policy": csp(nonce)})

    def error(status: int, message: str, annotator: str | None = None) -> HTMLResponse:
        return page("error.html", status=status, message=message, annotator=annotator)

    def annotator_of(request: Request) -> str:
        name = request.path_params["annotator"]
        if not _NAME.match(name):
            raise Refused(404, "annotator names are 1-64 letters, digits and . _ @ + -")
        return name

    async def start(request: Request) -> Response:
        name = request.query_params.get("name")
        if name is not None:
            name = name.strip()
            if not _NAME.match(name):
                problem = "Use 1-64 letters, digits and . _ @ + - (starting with a letter or digit)."
                return page("start.html", status=400, progress=state.progress(), problem=problem)
            return RedirectResponse(f"/label/{quote(name)}", status_code=303)
        return page("start.html", progress=state.progress(), problem=None)

    async def show(request: Request) -> Response:
        try:
            who = annotator_of(request)
        except Refused as e:
            return error(e.status, e.message)
        item = state.next_for(who, request.query_params.get("pair"))
        progress = state.progress(who)
        last = state.last_label(who)
        if item is None:
            return page("done.html", annotator=who, progress=progress, csrf=csrf.token(who), can_undo=last is not None)
        left = left_side(subset, who, item.pair_id)
        sides = [("A", item.a_text, item.a_messages), ("B", item.b_text, item.b_messages)]
        if left == "b":
            sides.reverse()
        return page(
            "label.html", annotator=who, item=item, left=left,
            sides=[{"name": n, "text": t, "turns": m} for n, (_, t, m) in zip(("A", "B"), sides)],
            round=state.round_for(item.pair_id, who), csrf=csrf.token(who), shown_at=int(time.time() * 1000),
            progress=progress, can_undo=last is not None, choices=SCREEN,
        )

    def validate(who: str, form: dict[str, str]) -> dict:
        if not csrf.check(who, form.get("csrf")):
            raise Refused(403, "This page is out of date (the server restarted or the link is wrong): reload it.")
        if form.get("subset") != subset:
            raise Refused(400, f"this server labels subset {subset!r}, not {form.get('subset')!r}")
        pid = form.get("pair_id", "")
        if pid not in state.by_pair:
            raise Refused(404, f"pair {pid[:64]!r} is not in subset {subset!r}")
        choice = form.get("choice")
        if choice not in SCREEN_CHOICES:
            raise Refused(400, "choose one of: A is better, B is better, tie, both bad, skip")
        left = left_side(subset, who, pid)
        if form.get("left") != left:
            raise Refused(400, "the sides shown do not match this pair: reload the page")
        try:
            rnd = int(form.get("round", ""))
        except ValueError:
            raise Refused(400, "round must be an integer") from None
        if not 0 <= rnd <= 10_000:
            raise Refused(400, "round out of range")
        rationale = (form.get("rationale") or "").strip()
        if len(rationale) > MAX_RATIONALE:
            raise Refused(400, f"the rationale is longer than {MAX_RATIONALE} characters")
        seconds = None
        with contextlib.suppress(ValueError):
            shown = int(form.get("shown_at", ""))
            elapsed = time.time() - shown / 1000
            if 0 <= elapsed <= 86_400:
                seconds = round(elapsed, 3)
        stored = {"left": left, "right": "b" if left == "a" else "a"}.get(choice, choice)
        return {
            "label_id": label_id(subset, pid, who, rnd), "subset": subset, "pair_id": pid, "annotator": who,
            "round": rnd, "choice": stored, "left": left, "rationale": rationale or None, "seconds": seconds,
            "origin": "web", "created_at": datetime.now(timezone.utc), "undone_at": None,
        }

    async def submit(request: Request) -> Response:
        try:
            who = annotator_of(request)
            form = await read_form(request)
            row = validate(who, form)
            if row["label_id"] not in state.rows and row["round"] != state.round_for(row["pair_id"], who):
                raise Refused(409, "This pair was labelled again since the page was loaded: reload it.")
        except Refused as e:
            return error(e.status, e.message, request.path_params.get("annotator"))
        if row["label_id"] not in state.rows:  # else: a retry of a committed label, nothing to do
            try:
                await asyncio.wrap_future(writer.insert(row))
            except Exception as e:  # noqa: BLE001 - any failure: the label is not confirmed
                return error(503, f"The label was NOT saved ({type(e).__name__}): submit it again.", who)
            pending["local"] += 1
            state.apply(row)
        return RedirectResponse(f"/label/{quote(who)}", status_code=303, headers={"x-label-id": row["label_id"]})

    async def undo(request: Request) -> Response:
        try:
            who = annotator_of(request)
            form = await read_form(request)
            if not csrf.check(who, form.get("csrf")):
                raise Refused(403, "This page is out of date (the server restarted or the link is wrong): reload it.")
        except Refused as e:
            return error(e.status, e.message, request.path_params.get("annotator"))
        last = state.last_label(who)
        if last is None:
            return RedirectResponse(f"/label/{quote(who)}", status_code=303)
        row = {**last, "undone_at": datetime.now(timezone.utc)}
        try:
            await asyncio.wrap_future(writer.undo(row))
        except Exception as e:  # noqa: BLE001
            return error(503, f"The undo was NOT saved ({type(e).__name__}): try again.", who)
        pending["local"] += 1
        state.apply(row)
        return RedirectResponse(f"/label/{quote(who)}?pair={row['pair_id']}", status_code=303,
                                headers={"x-label-id": row["label_id"]})

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def favicon(request: Request) -> Response:
        return Response(status_code=204)

    async def refresh() -> None:
        """Pick up labels other processes wrote (another server, `label import`)."""
        import lance

        seen = max(writer.versions, default=0)
        while True:
            await asyncio.sleep(config.refresh_seconds)
            try:
                latest = await asyncio.to_thread(
                    lambda: lance.dataset(store.table_uri(TABLE), storage_options=store.storage_options).version)
                if latest <= seen or latest in writer.versions and all(
                        v in writer.versions for v in range(seen + 1, latest + 1)):
                    seen = max(seen, latest)
                    continue
                before = pending["local"]
                rows = await asyncio.to_thread(lambda: read(store, subset).to_dicts())
                if pending["local"] == before:  # else a local commit raced the read: next round
                    state.load(rows)
                    seen = latest
            except Exception:  # noqa: BLE001, S112 - a failed refresh is retried on the next tick
                continue

    @contextlib.asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(refresh())
        try:
            yield
        finally:
            task.cancel()
            await asyncio.to_thread(writer.close)

    app = Starlette(
        routes=[
            Route("/", start),
            Route("/label/{annotator}", show),
            Route("/label/{annotator}/submit", submit, methods=["POST"]),
            Route("/label/{annotator}/undo", undo, methods=["POST"]),
            Route("/healthz", healthz),
            Route("/favicon.ico", favicon),
        ],
        lifespan=lifespan,
    )
    guarded = Guard(app, loopback_only=is_loopback(config.host), token=config.token)
    guarded.state, guarded.writer = state, writer  # for tests and the benchmark
    return guarded
