"""`pairsift select`, `subsets` and `export`: strategies, saved subsets and their files."""

from __future__ import annotations

import click

from .options import echo_json, store_option


@click.command("select")
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
    from ..select.subsets import select

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


@click.command()
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print the manifests as JSON.")
def subsets(store, as_json):
    """List the saved subsets: strategy, size, labelled or out for annotation."""
    from ..select.subsets import list_subsets

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


@click.command()
@click.argument("name")
@store_option
@click.option("--out", required=True, type=click.Path(path_type=str),
              help="Output: FILE.jsonl, FILE.parquet, or a folder (HF save_to_disk).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "parquet", "hf"]), default=None,
              help="Force the format instead of guessing from --out.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def export(store, name, out, fmt, as_json):
    """Export subset NAME: prompt/chosen/rejected (TRL) when labelled, else response_a/response_b."""
    from ..select.export import export as run

    report = run(store, name, out, format=fmt)
    if as_json:
        echo_json(report.to_dict())
        return
    kind = "prompt/chosen/rejected" if report.labelled else "response_a/response_b for annotation"
    conv = ", conversational" if report.conversational else ""
    click.echo(f"{report.rows:,} pairs of '{name}' -> {report.path} ({report.format}, {kind}{conv})")
