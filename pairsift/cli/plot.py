"""`pairsift plot`: a subset's feature distributions against its pool, as one PNG."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from .options import echo_report, json_option, store_option

if TYPE_CHECKING:
    from ..store import Store


@click.command("plot")
@click.argument("subset")
@store_option
@click.option("--vs", "pool", default=None, metavar="SUBSET",
              help="Compare with this subset instead of the pool of all candidate pairs.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")
@click.option("--column", "columns", multiple=True, metavar="COLUMN",
              help="A pair_features column to draw (repeatable). Default: every cosine, margin, normalised "
                   "edit distance and DCRM column present.")
@json_option("the report")
def plot(store: Store, subset: str, pool: str | None, out: str, columns: tuple[str, ...], as_json: bool) -> None:
    """Draw SUBSET's cosine, margin, edit-distance and DCRM distributions against its pool.

    Small multiples with shared bins, densities (not counts) and medians; margins and DCRM
    oriented chosen - rejected. Missing columns are skipped with a note.

    Example:

    \b
      pairsift plot hh-easy --out hh-easy.png
      pairsift plot hh-easy --vs hh-hard --out easy-vs-hard.png
      pairsift plot bon2 --column dcrm_score_ref --column cos_minilm --out bon2.png
    """
    from ..select.plot import plot_subset

    report = plot_subset(store, subset, out, vs=pool, columns=list(columns) or None)
    echo_report(report, as_json)
