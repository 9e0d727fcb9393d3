"""Options, output and progress shared by every command (one definition each)."""

from __future__ import annotations

import functools
import json
import sys

import click

from ..errors import PairsiftError

DEFAULT_STORE = "pairsift-store"


def store_option(f):
    """--store DIR|URI and --storage-option KEY=VALUE (repeatable), shared by every command."""

    @click.option(
        "--store",
        "store_uri",
        default=DEFAULT_STORE,
        show_default=True,
        envvar="PAIRSIFT_STORE",
        help="Store location: a local directory or an object-store URI (s3://bucket/path).",
    )
    @click.option(
        "--storage-option",
        "storage_options",
        multiple=True,
        metavar="KEY=VALUE",
        help="Passed to the object store (e.g. region=us-east-1, endpoint=http://...). Repeatable.",
    )
    @functools.wraps(f)
    def wrapper(*args, store_uri, storage_options, **kwargs):
        from ..store import open_store

        opts = {}
        for item in storage_options:
            key, sep, value = item.partition("=")
            if not sep:
                raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--storage-option")
            opts[key] = value
        return f(*args, store=open_store(store_uri, opts or None), **kwargs)

    return wrapper


def echo_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


class PairsiftGroup(click.Group):
    """Turns library errors into one clean line on stderr and exit status 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except PairsiftError as e:
            click.secho(f"Error: {e}", fg="red", err=True)
            ctx.exit(1)


class RateLine:
    """A one-line progress counter on stderr (only when stderr is a terminal)."""

    def __init__(self, unit: str):
        import time

        self.unit, self.start, self._time = unit, time.perf_counter(), time.perf_counter
        self.live = sys.stderr.isatty()

    def __call__(self, records: int, items: int) -> None:
        if self.live:
            rate = items / max(self._time() - self.start, 1e-9)
            click.echo(f"\r{records:,} records, {items:,} {self.unit} ({rate:,.0f}/s)", err=True, nl=False)

    def close(self) -> None:
        if self.live:
            click.echo("", err=True)



def compute_options(f):
    """--device, --dtype, --batch-tokens, --max-length, --chunk-rows, --json: shared by embed/score."""
    options = [
        click.option("--device", default=None, help="cuda, cuda:1, cpu... (default: cuda if available)."),
        click.option("--dtype", default=None, help="Weights dtype (default: bfloat16 on GPU, float32 on CPU)."),
        click.option("--batch-tokens", type=int, default=None,
                     help="Token budget per batch, rows x padded length (default: 65536 GPU, 8192 CPU)."),
        click.option("--chunk-rows", type=int, default=4096, show_default=True,
                     help="Rows per committed chunk: what a killed run can lose and redo."),
        click.option("--json", "as_json", is_flag=True, help="Print the run report as JSON."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _progress(desc: str):
    """A progress bar with rate and ETA on stderr; returns (callback, close)."""
    from tqdm import tqdm

    bar = tqdm(total=None, desc=desc, unit="row", file=sys.stderr, dynamic_ncols=True)

    def update(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh()

    return update, bar.close


def run_report(fn, desc: str, as_json: bool, **kwargs):
    update, close = _progress(desc)
    try:
        report = fn(progress=update, **kwargs)
    finally:
        close()
    if as_json:
        echo_json(report)
        return
    counts = ", ".join(
        f"{k} {report[k]:,}" for k in ("blank", "empty", "truncated", "prompt_too_long") if k in report
    )
    rate = report["tokens"] / report["seconds"] if report.get("seconds") else 0
    click.echo(
        f"{report['table']}: {report['written']:,} rows written, {report['already_done']:,} already there "
        f"({counts}); {report['tokens']:,} tokens in {report['seconds']:.1f}s ({rate:,.0f} tokens/s)"
    )

