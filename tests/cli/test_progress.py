"""The one progress line: any unit, rate and ETA from the counts given, silent off a terminal."""

from __future__ import annotations

import io

from pairsift.cli.options import Progress


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_tokens_bar_shows_share_rate_and_eta():
    clock, out = Clock(), io.StringIO()
    bar = Progress("embed", unit="tokens", stream=out, live=True, min_interval=0, clock=clock)
    bar(0, 10_000)
    clock.t += 2.0
    bar(1_000, 10_000)  # 500 tokens/s -> 9,000 left = 18 s
    assert bar.text == "embed: 1,000/10,000 tokens 10% · 500 tokens/s · ETA 18s"
    clock.t += 18.0
    bar(10_000, 10_000)
    assert bar.text == "embed: 10,000/10,000 tokens 100% · 500 tokens/s"
    bar.close()
    lines = out.getvalue()
    assert lines.count("\r") == 3 and lines.endswith("\n")


def test_unknown_total_and_note():
    clock = Clock()
    bar = Progress("ingest", unit="responses", stream=io.StringIO(), live=True, min_interval=0, clock=clock)
    bar(0, note="0 records")
    clock.t += 4
    bar(2_000, note="1,000 records")
    assert bar.text == "ingest: 2,000 responses · 500 responses/s · 1,000 records"


def test_long_eta_and_throttle():
    clock, out = Clock(), io.StringIO()
    bar = Progress("score", unit="rows", stream=out, live=True, min_interval=1.0, clock=clock)
    bar(0, 1_000_000)
    clock.t += 0.5
    bar(10, 1_000_000)  # inside the interval: not drawn
    assert out.getvalue().count("\r") == 1
    clock.t += 0.5
    bar(100, 1_000_000)  # 100 rows/s -> 9,999 s
    assert bar.text.endswith("ETA 2h46m")


def test_not_a_terminal_draws_nothing():
    out = io.StringIO()  # isatty() is False, like a CI log or a pipe
    with Progress("pairs", unit="prompts", stream=out) as bar:
        bar(1, 2)
        bar(2, 2)
    assert out.getvalue() == ""
