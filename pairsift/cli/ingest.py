"""`pairsift ingest`: read a corpus into the store."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..report import plural
from .options import Progress, echo_report, json_option, store_option

if TYPE_CHECKING:
    from ..store import Store

MULTI_FIELDS = ("prompt_field", "responses_field", "text_field", "score_field", "source_field")


@click.command()
@click.argument("path", type=click.Path(exists=True, path_type=str))
@store_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "hh", "pairs", "multi", "shp"]),
    default="auto",
    show_default=True,
    help="Reader. auto guesses from the first record's fields and says what it chose.",
)
@click.option("--preset", type=click.Choice(["ultrafeedback", "alpaca"]), help="Field names for --format multi.")
@click.option("--prompt-field", help="multi: the prompt field (default: prompt).")
@click.option("--responses-field", help="multi: the list of responses (default: responses).")
@click.option("--text-field", help="multi: a response's text field (default: text).")
@click.option("--score-field", help="multi: a response's score field (default: score).")
@click.option("--source-field", help="multi: a response's generator/model field (default: source).")
@click.option("--dataset", help="Dataset name to record (default: from the file or folder name).")
@click.option("--split", help="Split to record (default: from the file name, else 'train').")
@click.option(
    "--skip-invalid",
    type=click.Path(dir_okay=False, writable=True),
    metavar="REJECTS.jsonl",
    help="Ingest the valid records; write each invalid one with its reason here. "
    "Without it, the first invalid record stops the ingest and nothing is written.",
)
@json_option("the ingest report")
def ingest(store: Store, path: str, fmt: str, preset: str | None, dataset: str | None, split: str | None,
           skip_invalid: str | None, as_json: bool, **fields: str | None) -> None:
    """Ingest a preference corpus (JSONL, JSONL.GZ, JSON, Parquet, HF save_to_disk folder).

    Formats: hh (HH-RLHF chosen/rejected dialogues), pairs (prompt/chosen/rejected, TRL standard
    or conversational), multi (a prompt with scored responses; --preset ultrafeedback|alpaca),
    shp (Stanford SHP). Re-ingesting the same data adds nothing.

    Example:

    \b
      pairsift ingest data/hh-rlhf/test.jsonl.gz
      pairsift ingest alpaca.jsonl.gz --preset alpaca --dataset alpaca-eval --split dev
      pairsift ingest pairs.jsonl --format pairs --skip-invalid rejects.jsonl
    """
    from ..errors import UsageError
    from ..ingest.pipeline import ingest as run_ingest

    options = {k: v for k, v in fields.items() if v is not None}
    if preset:
        options["preset"] = preset
    if options and fmt not in ("auto", "multi"):
        flags = ", ".join("--" + k.replace("_", "-") for k in options)
        raise UsageError(f"{flags} only apply to --format multi (got --format {fmt})")
    with Progress("ingest", unit="responses") as bar:
        report = run_ingest(
            store, path, fmt, dataset=dataset, split=split, skip_invalid=skip_invalid, reader_options=options,
            progress=lambda records, responses: bar(responses, note=plural(records, "record")),
        )
    echo_report(report, as_json)
