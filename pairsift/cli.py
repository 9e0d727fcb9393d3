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


MULTI_FIELDS = ("prompt_field", "responses_field", "text_field", "score_field", "source_field")


@cli.command()
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
@click.option("--json", "as_json", is_flag=True, help="Print the ingest report as JSON.")
def ingest(store, path, fmt, preset, dataset, split, skip_invalid, as_json, **fields):
    """Ingest a preference corpus (JSONL, JSONL.GZ, JSON, Parquet, HF save_to_disk folder).

    Formats: hh (HH-RLHF chosen/rejected dialogues), pairs (prompt/chosen/rejected, TRL standard
    or conversational), multi (a prompt with scored responses; --preset ultrafeedback|alpaca),
    shp (Stanford SHP). Re-ingesting the same data adds nothing.
    """
    from .errors import UsageError
    from .ingest.pipeline import ingest as run_ingest

    options = {k: v for k, v in fields.items() if v is not None}
    if preset:
        options["preset"] = preset
    if options and fmt not in ("auto", "multi"):
        flags = ", ".join("--" + k.replace("_", "-") for k in options)
        raise UsageError(f"{flags} only apply to --format multi (got --format {fmt})")
    line = RateLine("responses")
    try:
        report = run_ingest(
            store, path, fmt, dataset=dataset, split=split, skip_invalid=skip_invalid,
            reader_options=options, progress=line,
        )
    finally:
        line.close()
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo(report.summary())


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


# ---- embed / score (issue 3) ----------------------------------------------------------------


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


def _run_report(fn, desc: str, as_json: bool, **kwargs):
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


@cli.command()
@store_option
@click.option("--model", default=None,
              help="HF model id or local dir. Default for --target prompts: sentence-transformers/all-MiniLM-L6-v2.")
@click.option("--target", type=click.Choice(["responses", "prompts"]), default="responses", show_default=True,
              help="Embed response texts (alone, for REAL) or prompt texts (for RPO).")
@click.option("--name", default=None,
              help="Embedding set name, table embeddings_<name> (default: from the model; prompts: prompt_<model>).")
@click.option("--max-length", type=int, default=None,
              help="Max tokens per text; longer texts keep their start and are flagged (default: model's).")
@click.option("--pooling", type=click.Choice(["mean", "cls", "last"]), default=None,
              help="Default: the model's sentence-transformers pooling, else mean.")
@click.option("--append-eos", is_flag=True, help="Append the EOS token to every text (REAL does it for SHP).")
@compute_options
def embed(store, model, target, name, max_length, pooling, append_eos, device, dtype, batch_tokens, chunk_rows,
          as_json):
    """Embed responses (or prompts) into embeddings_<name>; resumable, provenance recorded."""
    from .ingest.embed import embed as run

    _run_report(run, "embed", as_json, store=store, model=model, target=target, name=name, device=device,
                dtype=dtype, max_length=max_length, batch_tokens=batch_tokens, pooling=pooling,
                append_eos=append_eos, chunk_rows=chunk_rows)


@cli.group()
def score():
    """Per-response log-probs (teacher forcing, as TRL computes them) and reward-model scores."""


def _chat_flag(value: str):
    return {"auto": None, "on": True, "off": False}[value]


@score.command("logprobs")
@store_option
@click.option("--model", required=True, help="Causal LM: HF model id or local dir.")
@click.option("--as", "name", required=True, help="Set name, table logprobs_<name> (e.g. ref, policy).")
@click.option("--max-length", type=int, default=1024, show_default=True,
              help="Truncate prompt+response to this many tokens, keep start (as DPOConfig.max_length).")
@click.option("--chat-template", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="Use the tokenizer's chat template over prompt/response messages.")
@compute_options
def score_logprobs(store, model, name, max_length, chat_template, device, dtype, batch_tokens, chunk_rows, as_json):
    """Sum and mean log-prob of each response given its prompt, with its token ids."""
    from .ingest.score import score_logprobs as run

    _run_report(run, "logprobs", as_json, store=store, model=model, name=name, device=device, dtype=dtype,
                max_length=max_length, batch_tokens=batch_tokens, chat_template=_chat_flag(chat_template),
                chunk_rows=chunk_rows)


@score.command("reward")
@store_option
@click.option("--model", required=True, help="Sequence-classification reward model: HF id or local dir.")
@click.option("--as", "name", default=None, help="Set name, table rewards_<name> (default: from the model).")
@click.option("--max-length", type=int, default=None, help="Max tokens of prompt+response (default: model's).")
@click.option("--label", type=int, default=0, show_default=True, help="Which output logit is the reward.")
@click.option("--chat-template", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="Use the tokenizer's chat template over prompt/response messages.")
@compute_options
def score_reward(store, model, name, max_length, label, chat_template, device, dtype, batch_tokens, chunk_rows,
                 as_json):
    """A reward model's score of each (prompt, response)."""
    from .ingest.score import score_rewards as run

    _run_report(run, "reward", as_json, store=store, model=model, name=name, device=device, dtype=dtype,
                max_length=max_length, batch_tokens=batch_tokens, chat_template=_chat_flag(chat_template),
                label=label, chunk_rows=chunk_rows)


def main() -> None:
    cli(prog_name="pairsift")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
