"""What keeps the labelling server safe to run: binding, access token, CSRF, response headers.

- It binds 127.0.0.1 by default. Any other address needs an access token, and then every
  request must carry it: ``?token=`` once (the server answers with a cookie and a redirect that
  drops the token from the address bar), the cookie, or ``Authorization: Bearer``.
- On a loopback address only loopback ``Host`` headers are served, so a web page on another
  site cannot reach the server through DNS rebinding.
- Every state-changing request is a POST carrying a CSRF token bound to the annotator (an HMAC
  under a per-process secret); cross-site POSTs (``Sec-Fetch-Site: cross-site``) are refused.
- Every response says ``nosniff``, ``no-referrer``, ``no-store`` and cannot be framed; pages
  get a Content-Security-Policy that runs only the page's own inline script (by nonce) and
  loads nothing from anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode

from ...errors import UsageError

COOKIE = "pairsift_label_token"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_binding(host: str, token: str | None) -> None:
    if not is_loopback(host) and not token:
        raise UsageError(
            f"--host {host} lets other machines reach the labelling page: pass --token TOKEN (or set "
            "PAIRSIFT_LABEL_TOKEN) so that only people with the token can use it"
        )
    if token is not None and len(token) < 16:
        raise UsageError("--token must be at least 16 characters (e.g. `python -c \"import secrets; print(secrets.token_urlsafe())\"`)")


class Csrf:
    """Per-annotator CSRF tokens under a secret that lives as long as the process."""

    def __init__(self, secret: bytes | None = None):
        self.secret = secret or secrets.token_bytes(32)

    def token(self, annotator: str) -> str:
        return hmac.new(self.secret, f"csrf:{annotator}".encode(), hashlib.sha256).hexdigest()

    def check(self, annotator: str, given: str | None) -> bool:
        return isinstance(given, str) and hmac.compare_digest(self.token(annotator), given)


def csp(nonce: str) -> str:
    return (
        "default-src 'none'; "
        f"script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )


STATIC_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]


class Guard:
    """ASGI middleware: Host check, access token, cross-site POSTs, static security headers."""

    def __init__(self, app, *, loopback_only: bool, token: str | None):
        self.app = app
        self.loopback_only = loopback_only
        self.token = token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}

        async def send_secured(message):
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in STATIC_HEADERS if k not in have]
                if b"content-security-policy" not in have:
                    extra.append((b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"))
                message = {**message, "headers": list(message.get("headers", [])) + extra}
            await send(message)

        host = headers.get("host", "")
        hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if self.loopback_only and hostname not in LOOPBACK_NAMES:
            return await _plain(send_secured, 400, "invalid Host header")
        if scope["method"] == "POST" and headers.get("sec-fetch-site") == "cross-site":
            return await _plain(send_secured, 403, "cross-site request refused")
        if self.token is not None:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            if "token" in query:
                if not hmac.compare_digest(query["token"], self.token):
                    return await _plain(send_secured, 401, "wrong access token")
                rest = urlencode({k: v for k, v in query.items() if k != "token"})
                location = scope.get("path", "/") + (f"?{rest}" if rest else "")
                cookie = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
                return await _plain(send_secured, 303, "", [(b"location", location.encode()),
                                                            (b"set-cookie", cookie.encode())])
            given = None
            auth = headers.get("authorization", "")
            if auth.lower().startswith("bearer "):
                given = auth[7:].strip()
            elif "cookie" in headers:
                jar = SimpleCookie()
                try:
                    jar.load(headers["cookie"])
                except Exception:  # noqa: BLE001 - a malformed cookie header is just no token
                    jar = SimpleCookie()
                given = jar[COOKIE].value if COOKIE in jar else None
            if not (isinstance(given, str) and hmac.compare_digest(given, self.token)):
                return await _plain(send_secured, 401, "this labelling server needs its access token: open the "
                                                       "link with ?token=... you were given")
        return await self.app(scope, receive, send_secured)


async def _plain(send, status: int, text: str, headers: list | None = None) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})
