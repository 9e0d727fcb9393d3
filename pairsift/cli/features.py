"""`pairsift pairs` and `pairsift query`: materialised pair features and similarity bands."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..report import plural
from .executor import Executor, executor_options
from .options import Progress, echo_json_rows, echo_report, json_option, store_option

if TYPE_CHECKING:
    from ..store import Store


@click.command()
@store_option
@click.option("--labelled-only", is_flag=True, help="Only the dataset's labelled pairs, not all K(K-1)/2 per prompt.")
@click.option("--embedding", "embeddings", multiple=True, metavar="NAME",
              help="Cosine from embeddings_NAME (repeatable; default: every response embedding set).")
@click.option("--logprobs", "logprobs", multiple=True, metavar="NAME",
              help="Edit distance and log-prob gaps from logprobs_NAME (repeatable; default: every set).")
@click.option("--reward", "rewards", multiple=True, metavar="NAME",
              help="Reward gap from rewards_NAME (repeatable; default: every set).")
@click.option("--rebuild", is_flag=True, help="Recompute every pair and replace the table (one commit).")
@json_option("the report")
@executor_options
def pairs(store: Store, labelled_only: bool, embeddings: tuple[str, ...], logprobs: tuple[str, ...],
          rewards: tuple[str, ...], rebuild: bool, as_json: bool, executor: Executor) -> None:
    """Materialise candidate pairs and their features into pair_features (incremental).

    Cosine per embedding set, token edit distance, log-prob and reward gaps, score margin and
    orientation (from the dataset label, else from different scores; equal scores are ties).
    A re-run computes only new prompts; a new set adds its columns to the existing rows.

    Example:

    \b
      pairsift pairs
      pairsift pairs --labelled-only --embedding minilm --logprobs ref
    """
    build_pairs = executor.pairs()
    with Progress("pairs", unit="prompts") as bar:
        report = build_pairs(
            store,
            labelled_only=labelled_only,
            embeddings=list(embeddings) or None,
            logprobs=list(logprobs) or None,
            rewards=list(rewards) or None,
            rebuild=rebuild,
            progress=bar,
        )
    echo_report(report, as_json)


@click.command()
@store_option(create=False)
@click.option("--band", nargs=2, type=float, required=True, metavar="LO HI", help="Cosine range, inclusive.")
@click.option("--embedding", default=None, metavar="NAME", help="Which cos_NAME column (needed if several).")
@click.option("--limit", type=int, default=100, show_default=True, help="Rows to show, lowest cosine first; 0: all.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as a JSON array.")
def query(store: Store, band: tuple[float, float], embedding: str | None, limit: int, as_json: bool) -> None:
    """Pairs whose cosine lies in a band, with the prompt and both texts.

    Example:

    \b
      pairsift query --band 0.2 0.4 --limit 20
      pairsift query --band -1 1 --limit 0 --embedding minilm --json
    """
    from ..features.query import iter_band

    # Streamed: one batch of rows (with texts) in memory at a time, whatever --limit.
    batches = iter_band(store, band[0], band[1], embedding=embedding, limit=limit or None)
    if as_json:
        # Python rows for a few thousand pairs at a time: they take ~10x the Arrow batch's memory.
        echo_json_rows(b.slice(i, 2048).to_pylist() for b in batches for i in range(0, b.num_rows, 2048))
        return

    def short(text: str | None, n: int = 70) -> str:
        text = " ".join((text or "").split())
        return text if len(text) <= n else text[: n - 1] + "…"

    n, cos = 0, "cos"
    for batch in batches:
        cos = next((c for c in batch.column_names if c.startswith("cos_")), cos)
        for r in batch.to_pylist():
            label = {1: "a chosen", -1: "b chosen"}.get(r["label"], "tie" if r["tie"] else "unlabelled")
            click.echo(f"{r[cos]:.4f}  {r['pair_id']}  {label}")
            click.echo(f"  prompt: {short(r['prompt'])}")
            click.echo(f"  a: {short(r['text_a'])}")
            click.echo(f"  b: {short(r['text_b'])}")
            n += 1
    click.echo(f"{plural(n, 'pair')} with {cos} in [{band[0]}, {band[1]}]", err=True)
