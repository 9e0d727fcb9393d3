"""`pairsift label serve` as a real process for the live and browser tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx


class Server:
    """`pairsift label serve` in its own process group; the URL is read from its stdout."""

    def __init__(self, store_uri: str, *args: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pairsift.cli", "label", "serve", "u", "--store", store_uri, "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        line = self.proc.stdout.readline().strip()
        if not line.startswith("http://"):
            raise RuntimeError(f"server did not start: {line!r} {self.proc.stderr.read()}")
        self.url = line.rstrip("/")
        for _ in range(600):  # the port is bound before the app starts: wait until it answers
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("server never answered /healthz")

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # graceful: commits what is queued
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill9()


class ThreadServer:
    """The same app on a real uvicorn server and socket, in a thread of this process (no
    interpreter start-up: the default test run stays fast)."""

    def __init__(self, store, subset: str = "u", **config):
        import threading

        import uvicorn

        from pairsift.label.server.app import make_app
        from pairsift.label.server.config import ServeConfig
        from pairsift.label.server.run import bind

        app = make_app(store, subset, ServeConfig(**config))
        sock = bind("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        for _ in range(600):
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("server never answered /healthz")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
