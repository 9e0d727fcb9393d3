"""The `pairsift` command: one click command per verb, each a call into the library.

Progress bars and human summaries go to stderr; stdout carries results (``--json`` where a
command has one). Every :class:`~pairsift.errors.PairsiftError` becomes a one-line message and
exit status 1, never a traceback. Nothing here imports torch, transformers or trl at module
level: `pairsift --help`, `ingest`, `info` and `select` stay light.
"""

from __future__ import annotations

import contextlib
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
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
def demo(store, as_json):
    """Run the whole flow on the embedded default and print a summary.

    Ingests the bundled HH-RLHF sample, embeds the responses with all-MiniLM-L6-v2 (works
    offline), builds pair features and selects the REAL easy and hard halves. Re-running adds
    nothing.
    """
    from .demo import format_summary, run_demo

    result = run_demo(store, say=lambda s: click.echo(s, err=True))
    if as_json:
        echo_json(result)
    else:
        click.echo(format_summary(result))


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


# ---- training (issue 5): train, eval, stability ------------------------------------------------


@cli.command()
@click.argument("name")
@store_option
@click.option("--model", default=None, help="Policy to train: local dir or HF model id.")
@click.option("--ref-model", default=None, help="Reference model (default: a second load of --model).")
@click.option("--loss", type=click.Choice(["sigmoid", "ipo", "hinge", "rpo", "rpo-unpaired", "rpo-diagonal"]),
              default=None, help="sigmoid (DPO), ipo, hinge (SLiC), or relative preference optimisation. [sigmoid]")
@click.option("--beta", type=float, default=None, help="KL strength (tau for IPO). [0.1]")
@click.option("--tau", type=float, default=None, help="RPO temperature over prompt similarity. [0.5]")
@click.option("--lr", "learning_rate", type=float, default=None, help="Peak learning rate. [1e-6]")
@click.option("--epochs", type=float, default=None, help="Passes over the subset. [1]")
@click.option("--max-steps", type=int, default=None, help="Optimizer steps instead of --epochs.")
@click.option("--batch-size", type=int, default=None, help="Pairs per device per micro-batch. [8]")
@click.option("--grad-accum", "gradient_accumulation_steps", type=int, default=None,
              help="Micro-batches per optimizer step. [1]")
@click.option("--max-length", type=int, default=None, help="Prompt+completion token limit. [1024]")
@click.option("--output", default=None, help="Run directory. [runs/NAME-LOSS]")
@click.option("--save-steps", type=int, default=None, help="Checkpoint every N steps (for `pairsift eval`).")
@click.option("--seed", type=int, default=None, help="Shuffle and training seed. [0]")
@click.option("--prompt-embeddings", default=None, help="Stored prompt-embedding set for RPO. [prompt_minilm]")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None, help="[auto]")
@click.option("--bf16/--no-bf16", default=None, help="bf16 mixed precision. [on with CUDA]")
@click.option("--config", "recipe", type=click.Path(exists=True, dir_okay=False), default=None,
              help="YAML recipe of these options; command-line options override it.")
@click.option("--json", "as_json", is_flag=True, help="Print the run manifest as JSON.")
def train(store, name, recipe, as_json, **options):
    """Align --model on subset NAME, streamed from the store into TRL (DPO/IPO/SLiC/RPO).

    Saves the model and pairsift_manifest.json (subset, store versions, config) to --output.
    Multi-GPU: `accelerate launch -m pairsift.cli train NAME ...`.
    """
    from .train.config import TrainConfig
    from .train.run import train as run

    options["subset"] = name
    config = TrainConfig.from_yaml(recipe, **options) if recipe else TrainConfig().merged(**options)
    with contextlib.redirect_stdout(sys.stderr):  # the trainer prints its logs: keep stdout for results
        manifest = run(store, config.validate())
    if as_json:
        echo_json(manifest)
        return
    losses = [h["loss"] for h in manifest["log_history"] if "loss" in h]
    last = f", last logged loss {losses[-1]:.4f}" if losses else ""
    click.echo(f"trained on subset '{name}' ({manifest['n_pairs']:,} pairs, {manifest['max_steps']} steps{last}); "
               f"model and manifest in {manifest['output']}")


@cli.command("eval")
@store_option
@click.option("--model", "models", multiple=True, required=True,
              help="Checkpoint dir, or a run dir (all its checkpoint-N). Repeatable or comma-separated.")
@click.option("--ref-model", required=True, help="Reference model the rewards are measured against.")
@click.option("--subset", required=True, help="Held-out labelled subset.")
@click.option("--beta", type=float, default=0.1, show_default=True)
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--max-length", type=int, default=1024, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def eval_(store, models, ref_model, subset, beta, batch_size, max_length, device, as_json):
    """DPO loss, reward margin (with and without beta) and reward accuracy on a held-out subset.

    Several checkpoints give the training curve.
    """
    from .train.evaluate import evaluate

    paths = [p for m in models for p in m.split(",") if p]
    with contextlib.redirect_stdout(sys.stderr):
        report = evaluate(store, subset, paths, ref_model, beta=beta, batch_size=batch_size, max_length=max_length,
                          device=device, progress=lambda m: click.echo(f"evaluating {m}", err=True))
    if as_json:
        echo_json(report)
        return
    click.echo(f"subset {subset}, reference {report['ref_model']}, beta {beta} "
               "(margin_beta includes beta, margin_raw does not)")
    click.echo(f"{'step':>6} {'loss':>8} {'margin_beta':>12} {'margin_raw':>11} {'accuracy':>9} {'pairs':>6}  model")
    for r in report["results"]:
        step = "-" if r["step"] is None else r["step"]
        click.echo(f"{step:>6} {r['loss']:>8.4f} {r['reward_margin_beta']:>12.4f} {r['reward_margin_no_beta']:>11.4f} "
                   f"{r['reward_accuracy']:>9.3f} {r['n_pairs']:>6}  {r['model']}")


@cli.command()
@store_option
@click.option("--models", required=True, help="Comma-separated checkpoints, first = baseline (CKPT1,CKPT2,...).")
@click.option("--subset", required=True, help="Subset whose pairs are compared (labels not needed).")
@click.option("--plot", default=None, help="PNG path. [stability-SUBSET.png]")
@click.option("--max-length", type=int, default=512, show_default=True)
@click.option("--device", default=None, help="cuda, cpu... (default: cuda if available).")
@click.option("--dtype", default=None, help="Forward dtype (pooling is fp32 regardless).")
@click.option("--batch-tokens", type=int, default=None, help="Token budget per batch.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def stability(store, models, subset, plot, max_length, device, dtype, batch_tokens, as_json):
    """REAL's embedding-stability check: the same pairs' response cosines under each checkpoint."""
    from .train.stability import stability as run

    report = run(store, subset, [m for m in models.split(",") if m], device=device, dtype=dtype,
                 max_length=max_length, batch_tokens=batch_tokens, plot=plot or f"stability-{subset}.png",
                 progress=lambda m: click.echo(f"embedding under {m}", err=True))
    if as_json:
        echo_json(report)
        return
    for c in report["checkpoints"]:
        corr = "-" if c["pearson_vs_first"] is None else f"{c['pearson_vs_first']:.3f}"
        click.echo(f"{c['model']}: mean cos {c['mean']:.4f} (std {c['std']:.4f}), "
                   f"mean |shift| {c['mean_abs_shift']:.4f}, pearson vs first {corr}")
    click.echo(f"max mean |shift| {report['max_mean_abs_shift']:.4f}; plot {report['plot']}")


# ---- selection: select, subsets, export, label import (issue 4) ------------------------------


@cli.command("select")
# Spelled out (not read from the registry) so that `pairsift --help` imports nothing heavy; a
# test checks the two lists agree.
@click.argument("strategy", type=click.Choice(
    ["easy", "hard", "centroid", "random", "easy-half", "hard-half", "random-half", "band", "dcrm", "map", "top"]))
@store_option
@click.option("--name", required=True, help="Name to save the subset under.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every random choice (recorded).")
@click.option("--where", default=None, help="SQL filter on pair_features, pushed into Lance (e.g. \"source_a != source_b\").")
@click.option("--replace", is_flag=True, help="Overwrite an existing subset of the same name.")
@click.option("--embedding", default=None, help="REAL/band: embedding set (column cos_<set>). [the only one]")
@click.option("--min", "min_", type=float, default=None, help="band: lowest cosine (inclusive).")
@click.option("--max", "max_", type=float, default=None, help="band: highest cosine (inclusive).")
@click.option("--per-prompt", type=int, is_flag=False, flag_value=-1, default=None,
              help="band: at most K pairs per prompt (--per-prompt K); top: apply --k/--ratio per prompt (flag).")
@click.option("--reward", default=None, help="dcrm/map: reward set (column dreward_<rm>); it also orients. [dataset score]")
@click.option("--logprobs", default=None, help="dcrm: log-prob set for e/p [ref]; map: the policy's [policy].")
@click.option("--ablation", type=click.Choice(["no-edit", "no-logp", "margin-only"]), default=None, help="dcrm ablation.")
@click.option("--different-source", is_flag=True, default=None, help="dcrm: only pairs from two different sources.")
@click.option("--ratio", type=float, default=None, help="map: fraction kept [0.4]; top: fraction instead of --k.")
@click.option("--weight", type=float, default=None, help="map: w in zR - w*zL. [1.0]")
@click.option("--variant", type=click.Choice(["map", "rm_margin", "logp_margin_norm_abs", "rand"]), default=None,
              help="map: score variant. [map]")
@click.option("--by", default=None, help="top: numeric column of pair_features to rank by.")
@click.option("--k", type=int, default=None, help="top: how many pairs (per prompt with --per-prompt).")
@click.option("--descending", is_flag=True, default=None, help="top: largest first (default smallest first).")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def select_cmd(store, strategy, name, seed, where, replace, min_, max_, per_prompt, as_json, **options):
    """Select pairs with STRATEGY and save them as subset NAME (manifest: params, seed, versions, counts).

    \b
    easy / hard / centroid / random   REAL, one pair per prompt (--embedding)
    easy-half / hard-half / random-half   REAL for one-pair-per-prompt data: floor(N/2) pairs
    band --min LO --max HI [--per-prompt K]
    dcrm [--reward RM] [--logprobs LP] [--ablation A] [--different-source]
    map [--ratio 0.4] [--weight 1.0] [--variant V] [--reward RM] [--logprobs LP]
    top --by COLUMN (--k N | --ratio R) [--per-prompt] [--descending]
    """
    from .select.subsets import select

    params = {k: v for k, v in options.items() if v is not None}
    if min_ is not None:
        params["min"] = min_
    if max_ is not None:
        params["max"] = max_
    if per_prompt is not None:
        if strategy == "top":
            if per_prompt != -1:
                raise click.BadParameter("for top, --per-prompt is a flag; give the count with --k",
                                         param_hint="--per-prompt")
            params["per_prompt"] = True
        else:
            if per_prompt == -1:
                raise click.BadParameter("give the number of pairs per prompt: --per-prompt K", param_hint="--per-prompt")
            params["per_prompt"] = per_prompt
    result = select(store, strategy, name, seed=seed, where=where, replace=replace, **params)
    if as_json:
        echo_json(result.to_dict())
        return
    click.echo(result.summary())


@cli.command()
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print the manifests as JSON.")
def subsets(store, as_json):
    """List the saved subsets: strategy, size, labelled or out for annotation."""
    from .select.subsets import list_subsets

    rows = list_subsets(store)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("(no subsets: create one with `pairsift select STRATEGY --name NAME`)")
    for r in rows:
        state = "labelled" if r["labelled"] else "unlabelled"
        click.echo(f"{r['name']:<24} {r['strategy']:<12} {r['counts']['selected']:>10,} pairs  {state:<10} "
                   f"seed {r['seed']}  {r['created_at']:%Y-%m-%d %H:%M}")


@cli.command()
@click.argument("name")
@store_option
@click.option("--out", required=True, type=click.Path(path_type=str),
              help="Output: FILE.jsonl, FILE.parquet, or a folder (HF save_to_disk).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "parquet", "hf"]), default=None,
              help="Force the format instead of guessing from --out.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def export(store, name, out, fmt, as_json):
    """Export subset NAME: prompt/chosen/rejected (TRL) when labelled, else response_a/response_b."""
    from .select.export import export as run

    report = run(store, name, out, format=fmt)
    if as_json:
        echo_json(report.to_dict())
        return
    kind = "prompt/chosen/rejected" if report.labelled else "response_a/response_b for annotation"
    conv = ", conversational" if report.conversational else ""
    click.echo(f"{report.rows:,} pairs of '{name}' -> {report.path} ({report.format}, {kind}{conv})")


@cli.group()
def label():
    """Annotation round trip: read labels for an exported unlabelled subset."""


@label.command("import")
@click.argument("name")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=str))
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def label_import(store, name, file, as_json):
    """Orient subset NAME's pairs from FILE (JSONL/CSV: pair_id + label a|b or chosen_id)."""
    from .select.labels import import_labels

    report = import_labels(store, name, file)
    if as_json:
        echo_json(report.to_dict())
        return
    state = "fully labelled" if report.subset_labelled else f"{report.unlabelled_left:,} pairs still unlabelled"
    click.echo(f"'{name}': {report.labelled_now:,} pairs labelled by annotators "
               f"({report.relabelled:,} relabelled); {state}")


@cli.command()
@store_option
@click.option("--labelled-only", is_flag=True, help="Only the dataset's labelled pairs, not all K(K-1)/2 per prompt.")
@click.option("--embedding", "embeddings", multiple=True, metavar="NAME",
              help="Cosine from embeddings_NAME (repeatable; default: every response embedding set).")
@click.option("--logprobs", "logprobs", multiple=True, metavar="NAME",
              help="Edit distance and log-prob gaps from logprobs_NAME (repeatable; default: every set).")
@click.option("--reward", "rewards", multiple=True, metavar="NAME",
              help="Reward gap from rewards_NAME (repeatable; default: every set).")
@click.option("--rebuild", is_flag=True, help="Recompute every pair and replace the table (one commit).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def pairs(store, labelled_only, embeddings, logprobs, rewards, rebuild, as_json):
    """Materialise candidate pairs and their features into pair_features (incremental).

    Cosine per embedding set, token edit distance, log-prob and reward gaps, score margin and
    orientation (from the dataset label, else from different scores; equal scores are ties).
    A re-run computes only new prompts; a new set adds its columns to the existing rows.
    """
    from .select.pairs import build_pairs

    live = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if live:
            click.echo(f"\r{done:,}/{total:,} prompts", err=True, nl=False)

    try:
        report = build_pairs(
            store,
            labelled_only=labelled_only,
            embeddings=list(embeddings) or None,
            logprobs=list(logprobs) or None,
            rewards=list(rewards) or None,
            rebuild=rebuild,
            progress=progress,
        )
    finally:
        if live:
            click.echo("", err=True)
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo(report.summary())


@cli.command()
@store_option
@click.option("--band", nargs=2, type=float, required=True, metavar="LO HI", help="Cosine range, inclusive.")
@click.option("--embedding", default=None, metavar="NAME", help="Which cos_NAME column (needed if several).")
@click.option("--limit", type=int, default=100, show_default=True, help="Rows to show, lowest cosine first; 0: all.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as a JSON array.")
def query(store, band, embedding, limit, as_json):
    """Pairs whose cosine lies in a band, with the prompt and both texts."""
    from .select.query import query_band

    rows = query_band(store, band[0], band[1], embedding=embedding, limit=limit or None).to_pylist()
    if as_json:
        echo_json(rows)
        return
    cos = next((k for k in (rows[0] if rows else {}) if k.startswith("cos_")), "cos")

    def short(text, n=70):
        text = " ".join((text or "").split())
        return text if len(text) <= n else text[: n - 1] + "…"

    for r in rows:
        label = {1: "a chosen", -1: "b chosen"}.get(r["label"], "tie" if r["tie"] else "unlabelled")
        click.echo(f"{r[cos]:.4f}  {r['pair_id']}  {label}")
        click.echo(f"  prompt: {short(r['prompt'])}")
        click.echo(f"  a: {short(r['text_a'])}")
        click.echo(f"  b: {short(r['text_b'])}")
    click.echo(f"{len(rows):,} pairs with {cos} in [{band[0]}, {band[1]}]", err=True)


def main() -> None:
    cli(prog_name="pairsift")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
