"""`pairsift label`: the annotation round trip."""

from __future__ import annotations

import click

from .options import echo_json, store_option


@click.group()
def label():
    """Annotation round trip: read labels for an exported unlabelled subset.

    Example:

    \b
      pairsift label import unlabelled labels.jsonl
    """


@label.command("import")
@click.argument("name")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=str))
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def label_import(store, name, file, as_json):
    """Orient subset NAME's pairs from FILE (JSONL/CSV: pair_id + label a|b or chosen_id).

    Example:

    \b
      pairsift label import unlabelled labels.jsonl
      pairsift label import unlabelled labels.csv --json
    """
    from ..select.labels import import_labels

    report = import_labels(store, name, file)
    if as_json:
        echo_json(report.to_dict())
        return
    state = "fully labelled" if report.subset_labelled else f"{report.unlabelled_left:,} pairs still unlabelled"
    click.echo(f"'{name}': {report.labelled_now:,} pairs labelled by annotators "
               f"({report.relabelled:,} relabelled); {state}")
