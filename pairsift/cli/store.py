"""`pairsift info` and `pairsift demo`: the store at a glance, and the whole flow on the bundled sample."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..report import plural
from .options import echo_json, store_option

if TYPE_CHECKING:
    from ..store import Store


@click.command()
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
def demo(store: Store, as_json: bool) -> None:
    """Run the whole flow on the embedded default and print a summary.

    Ingests the bundled HH-RLHF sample, embeds the responses with all-MiniLM-L6-v2 (works
    offline), builds pair features and selects the REAL easy and hard halves. Re-running adds
    nothing and reports the store's totals again.

    Example:

    \b
      pairsift demo
      pairsift demo --store /tmp/demo-store --json
    """
    from ..demo import format_summary, run_demo

    result = run_demo(store, say=lambda s: click.echo(s, err=True))
    if as_json:
        echo_json(result)
    else:
        click.echo(format_summary(result))


@click.command()
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def info(store: Store, as_json: bool) -> None:
    """Tables, row counts, schema and table versions, datasets and splits of a store.

    Example:

    \b
      pairsift info --store pairsift-store
      pairsift info --store s3://bucket/store --storage-option region=us-east-1 --json
    """
    summary = store.info()
    if as_json:
        echo_json(summary)
        return
    click.echo(f"store   {summary['uri']}  (schema version {summary['schema_version']})")
    if not summary["tables"]:
        click.echo("(empty: run `pairsift ingest FILE` to add a corpus)")
    for name, t in summary["tables"].items():
        click.echo(f"table   {name:<24} {t['rows']:>12,} rows   version {t['version']}")
    for dataset, splits in summary["datasets"].items():
        parts = ", ".join(f"{s}: {plural(n, 'prompt')}" for s, n in splits.items())
        click.echo(f"dataset {dataset}  ({parts})")
