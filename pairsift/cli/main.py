"""The `pairsift` command: one click command per verb, each a call into the library.

Progress lines and warnings go to stderr; stdout carries the result: the library report's
``summary()``, or its ``to_dict()`` as JSON with ``--json``. Every
:class:`~pairsift.errors.PairsiftError` becomes a one-line message and exit status 1, never a
traceback. Command modules import the library inside the command body, so `pairsift --help`,
`--version` and argument errors import no lancedb, polars, pyarrow.compute, torch or trl
(tests/cli/test_startup.py checks it with ``-X importtime``).
"""

from __future__ import annotations

import click

from . import compare, compute, features, ingest, label, plot, select, store, train
from .options import PairsiftGroup


@click.group(cls=PairsiftGroup)
@click.version_option(package_name="pairsift")
def cli() -> None:
    """pairsift: decide which preference pairs an LLM should be aligned on.

    ingest -> embed/score -> pairs -> select -> export/train. Every command works on a store
    (a LanceDB directory or s3:// URI), by default ./pairsift-store.
    """


for command in (
    ingest.ingest,
    store.info,
    store.optimize,
    compute.embed,
    compute.score,
    features.pairs,
    features.query,
    select.select_cmd,
    select.subsets,
    select.export,
    plot.plot,
    label.label,
    train.train,
    train.eval_,
    train.stability,
    compare.split, compare.compare,
    store.demo,
):
    cli.add_command(command)


def main() -> None:
    import os

    # Lance logs a WARN for every first write to a table; the CLI shows errors only, unless the
    # user asked for more. (Set here, before Lance loads; never by importing the library.)
    os.environ.setdefault("LANCE_LOG", "error")
    cli(prog_name="pairsift")
