"""`pairsift info`, `pairsift optimize` and `pairsift demo`: the store at a glance, its upkeep, and
the whole flow on the bundled sample."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..report import plural
from .options import echo_json, json_option, store_option

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
@store_option(create=False)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def info(store: Store, as_json: bool) -> None:
    """Tables, row counts, schema and table versions, datasets and splits of a store.

    Example:

    \b
      pairsift info --store pairsift-store
      pairsift info --store s3://bucket/store --storage-option region=us-east-1 --json

    A table that cannot be read is listed as DAMAGED, with the reason.
    """
    summary = store.info()
    if as_json:
        echo_json(summary)
        return
    click.echo(f"store   {summary['uri']}  (schema version {summary['schema_version']})")
    if not summary["tables"]:
        click.echo("(empty: run `pairsift ingest FILE` to add a corpus)")
    for name, t in summary["tables"].items():
        if "damaged" in t:
            click.echo(f"table   {name:<24} DAMAGED: {t['damaged']}")
            continue
        click.echo(f"table   {name:<24} {t['rows']:>12,} rows   version {t['version']}")
    for dataset, splits in summary["datasets"].items():
        parts = ", ".join(f"{s}: {plural(n, 'prompt')}" for s, n in splits.items())
        click.echo(f"dataset {dataset}  ({parts})")


@click.command()
@store_option(create=False)
@click.option("--keep-days", type=float, default=7.0, show_default=True,
              help="Keep versions younger than this many days (a reader may still be on one). "
                   "Versions a subset tagged are always kept.")
@click.option("--remove-orphans-now", is_flag=True,
              help="Also delete unreferenced data files younger than 7 days. Only when no other "
                   "pairsift job is writing to this store: a running job's files look the same.")
@json_option("the report")
def optimize(store: Store, keep_days: float, remove_orphans_now: bool, as_json: bool) -> None:
    """Compact tables, remove what crashed jobs left behind, and delete old versions.

    Never deletes a version a subset tagged.

    Example:

    \b
      pairsift optimize --store pairsift-store
      pairsift optimize --store pairsift-store --keep-days 1 --json
    """
    from datetime import timedelta

    from ..store.maintenance import optimize as run

    report = run(store, keep_versions=timedelta(days=keep_days), remove_orphans_now=remove_orphans_now)
    if as_json:
        echo_json(report)
    else:
        click.echo(report.summary())
