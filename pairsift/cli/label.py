"""`pairsift label`: annotation in the browser, from files, and what it says about the pairs."""

from __future__ import annotations

import click

from ..label.server.config import ServeConfig
from .options import echo_json, echo_report, json_option, store_option

_DEFAULTS = ServeConfig()


@click.group()
def label():
    """Label a subset's pairs: in the browser (serve), from files (import), Argilla/Label Studio
    (export/import); then orient the pairs (resolve) and measure the annotators (stats).

    Example:

    \b
      pairsift label serve unlabelled --overlap 2 --guidelines guidelines.md
      pairsift label resolve unlabelled
      pairsift label stats unlabelled --plot agreement.png
    """


@label.command("serve")
@click.argument("subset")
@store_option
@click.option("--host", default=_DEFAULTS.host, show_default=True,
              help="Address to bind. Anything but a loopback address needs --token.")
@click.option("--port", type=int, default=_DEFAULTS.port, show_default=True, help="TCP port (0: any free port).")
@click.option("--overlap", type=click.IntRange(min=1), default=_DEFAULTS.overlap, show_default=True,
              help="How many annotators label each pair.")
@click.option("--guidelines", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A Markdown file shown as the guidelines panel.")
@click.option("--token", default=None, envvar="PAIRSIFT_LABEL_TOKEN",
              help="Access token every request must carry (links: URL?token=...). Required off loopback.")
@click.option("--lease-seconds", type=float, default=_DEFAULTS.lease_seconds, show_default=True,
              help="How long a pair shown to one annotator is held for them.")
def label_serve(store, subset, host, port, overlap, guidelines, token, lease_seconds):
    """Serve a labelling page for SUBSET and print its URL (Ctrl+C stops it).

    Annotators open URL, type their name (or use their own link URL/label/NAME) and label with
    the keyboard: 1-5 choose (A better, B better, tie, both bad, skip), Enter submits, U undoes.
    Every label the page confirms is committed to the store's `labels` table.

    Example:

    \b
      pairsift label serve unlabelled
      pairsift label serve unlabelled --overlap 3 --guidelines guidelines.md --port 8080
      pairsift label serve unlabelled --host 0.0.0.0 --token "$(openssl rand -hex 16)"
    """
    from ..label.server.run import serve

    config = ServeConfig(host=host, port=port, overlap=overlap, guidelines=guidelines, token=token,
                         lease_seconds=lease_seconds)

    def ready(url: str) -> None:
        click.echo(url)
        where = f"{url}label/NAME" + ("?token=..." if token else "")
        click.echo(f"subset '{subset}': annotators open {url} or {where}; Ctrl+C stops", err=True)

    serve(store, subset, config, on_ready=ready)


@label.command("import")
@click.argument("subset")
@click.argument("file", type=click.Path(dir_okay=False, path_type=str))
@store_option
@click.option("--annotator", default=None, help="Annotator of every label in FILE (overrides the file's).")
@click.option("--format", "fmt", type=click.Choice(["auto", "rows", "argilla", "label-studio"]), default="auto",
              show_default=True, help="rows: JSONL/JSON/CSV with pair_id + label|chosen_id.")
@json_option()
def label_import(store, subset, file, annotator, fmt, as_json):
    """Add the labels in FILE to SUBSET's labels (idempotent; one commit).

    Labels: a, b (response_a / response_b as exported), tie, both bad, skip, or chosen_id.
    Then run `pairsift label resolve SUBSET` to orient the pairs.

    Example:

    \b
      pairsift label import unlabelled labels.jsonl --annotator alice
      pairsift label import unlabelled argilla-records.json
      pairsift label import unlabelled label-studio-export.json --json
    """
    from ..label.importing import import_labels

    echo_report(import_labels(store, subset, file, annotator=annotator, format=fmt), as_json)


@label.command("resolve")
@click.argument("subset")
@store_option
@click.option("--min-votes", type=click.IntRange(min=1), default=1, show_default=True,
              help="Votes a pair needs before it is oriented.")
@json_option()
def label_resolve(store, subset, min_votes, as_json):
    """Orient SUBSET's pairs by majority vote of their annotators.

    Ties and "both bad" are excluded and counted. The result is written to `pairs`
    (label_source "annotator"), `pair_features`, the subset's members and its manifest, so later
    `pairs`, `select`, `export` and `train` runs see it. Running it again changes nothing.

    Example:

    \b
      pairsift label resolve unlabelled
      pairsift label resolve unlabelled --min-votes 2 --json
    """
    from ..label.resolve import resolve

    echo_report(resolve(store, subset, min_votes=min_votes), as_json)


@label.command("stats")
@click.argument("subset")
@store_option
@click.option("--embedding", default=None, help="Cosine set for agreement by similarity (default: the only one).")
@click.option("--bins", type=click.IntRange(min=1), default=5, show_default=True, help="Equal-count cosine bins.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="Write agreement by cosine as this PNG.")
@json_option()
def label_stats(store, subset, embedding, bins, plot, as_json):
    """Annotators of SUBSET: counts, seconds per label, agreement (raw, Cohen's / Fleiss' kappa)
    and agreement by the pair's cosine.

    Example:

    \b
      pairsift label stats unlabelled
      pairsift label stats unlabelled --embedding minilm --bins 4 --plot agreement.png
    """
    from ..label.stats import label_stats as run

    echo_report(run(store, subset, embedding=embedding, bins=bins, plot=plot), as_json)


@label.command("export")
@click.argument("subset")
@store_option
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The JSON file to write.")
@click.option("--format", "fmt", type=click.Choice(["argilla", "label-studio"]), required=True,
              help="Argilla records or Label Studio tasks.")
@click.option("--reveal", is_flag=True, help="Add generator names, scores and features (blind by default).")
@click.option("--all", "all_pairs", is_flag=True, help="Every pair, also those that already have a label.")
@click.option("--label-config", type=click.Path(dir_okay=False), default=None,
              help="Also write the Label Studio labelling config (XML) here.")
@json_option()
def label_export(store, subset, out, fmt, reveal, all_pairs, label_config, as_json):
    """Write SUBSET's unlabelled pairs for Argilla or Label Studio (blind: texts and ids only).

    Import their annotations back with `pairsift label import SUBSET FILE`.

    Example:

    \b
      pairsift label export unlabelled --format argilla --out records.json
      pairsift label export unlabelled --format label-studio --out tasks.json --label-config config.xml
    """
    from ..label.formats import export_for_annotation

    report = export_for_annotation(store, subset, out, fmt, reveal=reveal, all_pairs=all_pairs,
                                   label_config=label_config)
    if as_json:
        echo_json(report)
        return
    left = f" ({report.skipped_labelled:,} already labelled left out)" if report.skipped_labelled else ""
    click.echo(f"'{subset}': {report.pairs:,} pairs written to {report.path} for {fmt}{left}"
               + ("" if not reveal else " (revealed: sources, scores, features)"))
    if report.label_config:
        click.echo(f"labelling config: {report.label_config}")

