"""Bind, print the URL, serve until interrupted (then commit what is queued and stop)."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable

from ...errors import StoreError, require
from ...store import Store
from .config import ServeConfig
from .security import check_binding


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        raise StoreError(f"cannot listen on {host}:{port}: {e.strerror or e} (choose another --port)") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(store: Store, subset: str, config: ServeConfig | None = None, *,
          on_ready: Callable[[str], None] = print) -> None:
    """Serve the labelling page of `subset`; `on_ready(url)` is called once the port is bound."""
    config = config or ServeConfig()
    check_binding(config.host, config.token)
    require("starlette", "label")
    require("uvicorn", "label")
    from .app import make_app

    app = make_app(store, subset, config)
    sock = bind(config.host, config.port)
    port = sock.getsockname()[1]
    shown = f"[{config.host.strip('[]')}]" if ":" in config.host else config.host
    on_ready(f"http://{shown}:{port}/")
    run_app(app, sock)


#: GIL switch interval while serving. The writer thread's commit needs the GIL a few times
#: (opening the dataset, building the merge); with the default 5 ms, a busy event loop made a
#: 15 ms commit take 70-300 ms under load, which is what every waiting annotator waits for.
SWITCH_INTERVAL = 0.0005


def run_app(app, sock: socket.socket) -> None:
    """Serve `app` on the bound socket with uvicorn until SIGINT/SIGTERM."""
    uvicorn = require("uvicorn", "label")
    # Keep-alive longer than uvicorn's 5 s: an annotator reads for tens of seconds between posts.
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                           backlog=2048, timeout_keep_alive=75, timeout_graceful_shutdown=10))
    previous = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        server.run(sockets=[sock])
    finally:
        sys.setswitchinterval(previous)
