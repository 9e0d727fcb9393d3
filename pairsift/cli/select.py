"""`pairsift select`, `subsets` and `export`: strategies, saved subsets and their files."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from ..report import plural
from .options import F, LazyHelpOption, echo_json, echo_report, json_option, store_option, warn

if TYPE_CHECKING:
    from ..store import Store


def registry_defaults(param: str) -> str:
    """``[default: map: 0.4]``: each strategy's default for `param`, read from the strategy registry.

    Called only when `pairsift select --help` is rendered (the registry imports polars).
    """
    from ..select.strategies import STRATEGIES

    by_value: dict[str, list[str]] = {}
    for name, cls in STRATEGIES.items():
        value = cls.defaults.get(param)
        if param in cls.defaults and value is not None and value is not False:
            by_value.setdefault(str(value), []).append(name)
    shown = "; ".join(f"{', '.join(names)}: {value}" for value, names in by_value.items())
    return f"[default: {shown}]" if shown else ""


def _library_default(param: str) -> str:
    import inspect

    from ..select.subsets import select

    return f"[default: {inspect.signature(select).parameters[param].default}]"


def strategy_option(*decls: str, help: str, param: str | None = None, **kwargs: Any) -> Callable[[F], F]:
    """An option of `select` whose help shows each strategy's default from the registry."""
    key = param or decls[-1].lstrip("-").replace("-", "_")
    return click.option(*decls, cls=LazyHelpOption, default=None,
                        help=lambda: f"{help}  {registry_defaults(key)}".strip(), **kwargs)


@click.command("select")
# Spelled out (not read from the registry) so that `pairsift --help` and a mistyped strategy
# answer without importing polars; a test checks each list against the registry.
@click.argument("strategy", type=click.Choice(
    ["easy", "hard", "centroid", "random", "easy-half", "hard-half", "random-half", "band", "dcrm", "map", "top"]))
@store_option
@click.option("--name", required=True, help="Name to save the subset under.")
@click.option("--seed", type=int, default=None, cls=LazyHelpOption,
              help=lambda: f"Seed of every random choice (recorded).  {_library_default('seed')}")
@click.option("--where", default=None, help="SQL filter on pair_features, pushed into Lance (e.g. \"source_a != source_b\").")
@click.option("--replace", is_flag=True, help="Overwrite an existing subset of the same name.")
@click.option("--dataset", default=None, help="Only prompts ingested as this dataset (see `pairsift info`).")
@click.option("--split", default=None, help="Only prompts of this split (with or without --dataset).")
@strategy_option("--embedding", help="REAL/band: embedding set, column cos_<set> (default: the only one); "
                                     "random-half: draw among the pairs with that cosine (as easy/hard-half).")
@click.option("--min", "min_", type=float, default=None, help="band: lowest cosine (inclusive).")
@click.option("--max", "max_", type=float, default=None, help="band: highest cosine (inclusive).")
@click.option("--per-prompt", type=int, is_flag=False, flag_value=-1, default=None,
              help="band: at most K pairs per prompt (--per-prompt K); top: apply --k/--ratio per prompt (flag).")
@strategy_option("--reward", help="dcrm/map: reward set (column dreward_<rm>); it also orients (default: dataset score).")
@strategy_option("--logprobs", help="dcrm: log-prob set for e/p; map: the policy's.")
@strategy_option("--ablation", type=click.Choice(["no-edit", "no-logp", "margin-only"]), help="dcrm ablation.")
@strategy_option("--different-source", is_flag=True, help="dcrm: only pairs from two different sources.")
@strategy_option("--ratio", type=float, help="map: fraction kept; top: fraction instead of --k.")
@strategy_option("--weight", type=float, help="map: w in zR - w*zL.")
@strategy_option("--variant", type=click.Choice(["map", "rm_margin", "logp_margin_norm_abs", "rand"]),
                 help="map: score variant.")
@strategy_option("--by", help="top: numeric column of pair_features to rank by.")
@strategy_option("--k", type=int, help="top: how many pairs (per prompt with --per-prompt).")
@strategy_option("--descending", is_flag=True, help="top: largest first (default smallest first).")
@json_option("the manifest")
def select_cmd(store: Store, strategy: str, name: str, seed: int | None, where: str | None, replace: bool,
               min_: float | None, max_: float | None, per_prompt: int | None, as_json: bool, **options: Any) -> None:
    """Select pairs with STRATEGY and save them as subset NAME (manifest: params, seed, versions, counts).

    \b
    easy / hard / centroid / random   REAL, one pair per prompt (--embedding)
    easy-half / hard-half / random-half   REAL for one-pair-per-prompt data: floor(N/2) pairs
    band --min LO --max HI [--per-prompt K]
    dcrm [--reward RM] [--logprobs LP] [--ablation A] [--different-source]
    map [--ratio R] [--weight W] [--variant V] [--reward RM] [--logprobs LP]
    top --by COLUMN (--k N | --ratio R) [--per-prompt] [--descending]

    --dataset/--split keep one ingested dataset's prompts (a store may hold several).

    Example:

    \b
      pairsift select easy-half --name hh-easy --embedding minilm --dataset hh-rlhf
      pairsift select band --name mid --min 0.3 --max 0.6 --per-prompt 1
      pairsift select map --name map40 --ratio 0.4 --logprobs policy
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
    if seed is not None:
        params["seed"] = seed
    result = select(store, strategy, name, where=where, replace=replace, **params)
    if as_json:
        for note in result.notes:
            warn(note)
    echo_report(result, as_json)


@click.command()
@store_option(create=False)
@json_option("the manifests")
def subsets(store: Store, as_json: bool) -> None:
    """List the saved subsets: strategy, size, labelled or out for annotation.

    Example:

    \b
      pairsift subsets
      pairsift subsets --json
    """
    from ..select.subsets import list_subsets

    rows = list_subsets(store)
    if as_json:
        echo_json([r.to_dict() for r in rows])
        return
    if not rows:
        click.echo("(no subsets: create one with `pairsift select STRATEGY --name NAME`)")
    for r in rows:
        state = "labelled" if r["labelled"] else "unlabelled"
        click.echo(f"{r['name']:<24} {r['strategy']:<12} {plural(r['counts']['selected'], 'pair'):>16}  {state:<10} "
                   f"seed {r['seed']}  {r['created_at']:%Y-%m-%d %H:%M}")


@click.command()
@click.argument("name")
@store_option(create=False)
@click.option("--out", default=None, type=click.Path(path_type=str),
              help="Output: FILE.jsonl, FILE.parquet, or a folder (HF save_to_disk, with a dataset card). "
                   "With --push-to-hub: where to keep the folder pushed.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "parquet", "hf"]), default=None,
              help="Force the format instead of guessing from --out.")
@click.option("--reveal", is_flag=True,
              help="Unlabelled subsets: also write sources, scores, ranks and features (blind by default).")
@click.option("--push-to-hub", "repo", default=None, metavar="OWNER/NAME",
              help="Upload to this Hugging Face dataset repository (parquet + dataset card, one commit; "
                   "token from HF_TOKEN or `huggingface-cli login`).")
@click.option("--private", is_flag=True, help="With --push-to-hub: create the repository private.")
@json_option("the report")
def export(store: Store, name: str, out: str | None, fmt: str | None, reveal: bool, repo: str | None, private: bool,
           as_json: bool) -> None:
    """Export subset NAME: prompt/chosen/rejected (TRL) when labelled, else response_a/response_b.

    In a prompt/chosen/rejected export every feature is oriented chosen-minus-rejected.

    Example:

    \b
      pairsift export hh-easy --out hh-easy.jsonl
      pairsift export hh-easy --out hh-easy/
      pairsift export hh-easy --push-to-hub me/hh-easy-pairs
      pairsift export unlabelled --out to-annotate.parquet
    """
    if repo is not None:
        if fmt is not None:
            raise click.UsageError("--format does not apply to --push-to-hub (the Hub gets parquet + README.md)")
        from ..select.hub import push_to_hub

        report = push_to_hub(store, name, repo, folder=out, private=private)
        echo_report(report, as_json)
        return
    if out is None:
        raise click.UsageError("Missing option '--out' (or --push-to-hub OWNER/NAME).")
    from ..select.export import export as run

    report = run(store, name, out, format=fmt, reveal=reveal)
    if as_json:
        echo_json(report.to_dict())
        return
    kind = "prompt/chosen/rejected" if report.labelled else "response_a/response_b for annotation"
    conv = ", conversational" if report.conversational else ""
    click.echo(f"{plural(report.rows, 'pair')} of '{name}' -> {report.path} ({report.format}, {kind}{conv})")
