"""The defaults of `pairsift label serve`, written once (the CLI shows them from here)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ServeConfig:
    """How the labelling server runs."""

    #: Address to bind. Anything but a loopback address needs an access token.
    host: str = "127.0.0.1"
    #: TCP port (0: any free port; the URL printed says which).
    port: int = 8765
    #: How many annotators label each pair.
    overlap: int = 1
    #: Access token required on every request (``?token=`` once, then a cookie). Required when
    #: `host` is not a loopback address.
    token: str | None = None
    #: A Markdown file shown as the guidelines panel.
    guidelines: str | None = None
    #: Seconds a pair shown to an annotator is held for them before others may get it.
    lease_seconds: float = 600.0
    #: Most labels committed together (group commit).
    max_batch: int = 256
    #: How often the server looks for labels other processes wrote (seconds).
    refresh_seconds: float = 2.0
