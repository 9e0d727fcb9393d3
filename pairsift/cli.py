"""The `pairsift` command: one click command per verb, each a call into the library.

Progress bars and human summaries go to stderr; stdout carries results (``--json`` where a
command has one). Every :class:`~pairsift.errors.PairsiftError` becomes a one-line message and
exit status 1, never a traceback. Nothing here imports torch, transformers or trl at module
level: `pairsift --help`, `ingest`, `info` and `select` stay light.
"""

from __future__ import annotations

import functools
import json
import sys

import click

from .errors import PairsiftError

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
        from .store import open_store

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


@click.group(cls=PairsiftGroup)
@click.version_option(package_name="pairsift")
def cli():
    """pairsift: decide which preference pairs an LLM should be aligned on.

    ingest -> embed/score -> pairs -> select -> export/train. Every command works on a store
    (a LanceDB directory or s3:// URI), by default ./pairsift-store.
    """


@cli.command()
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def info(store, as_json):
    """Tables, row counts, schema and table versions, datasets and splits of a store."""
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
        parts = ", ".join(f"{s}: {n:,} prompts" for s, n in splits.items())
        click.echo(f"dataset {dataset}  ({parts})")


def main() -> None:
    cli(prog_name="pairsift")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
