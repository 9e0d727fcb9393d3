"""`pairsift split` and `pairsift compare`: hold out prompts, then measure which selection helps.

The dpo learner's options are `pairsift train`'s, rendered from :class:`TrainConfig` like there.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from ..train.config import LOSSES, TrainConfig
from .options import F, Progress, config_option, device_option, echo_report, json_option, store_option

if TYPE_CHECKING:
    from ..store import Store


@click.command()
@store_option
@click.option("--holdout", type=float, default=0.2, show_default=True,
              help="Expected share of prompts held out for evaluation (by prompt, never by pair).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the hash that assigns prompts.")
@click.option("--replace", is_flag=True, help="Replace an existing split made with another seed or fraction.")
@json_option("the report")
def split(store: Store, holdout: float, seed: int, replace: bool, as_json: bool) -> None:
    """Hold out prompts for evaluation: no strategy selects them once the split exists.

    A prompt is held out when a hash of (seed, prompt id) falls below --holdout, so the split is
    deterministic and re-running it after ingesting more data keeps every old assignment.

    Example:

    \b
      pairsift split --holdout 0.2 --seed 0
      pairsift split --holdout 0.1 --seed 1 --replace
    """
    from ..compare.split import make_split

    echo_report(make_split(store, holdout=holdout, seed=seed, replace=replace), as_json)


def _dpo_option(name: str, *decls: str, **kwargs: Any) -> Callable[[F], F]:
    """A dpo-learner option from TrainConfig (None when not given: the config's default applies)."""
    help_text = "dpo: " + TrainConfig.__dataclass_fields__[name].metadata.get("help", "")
    return config_option(TrainConfig, name, *decls, from_recipe=True, help=help_text, **kwargs)


@click.command()
@store_option
@click.option("--strategy", "-s", "strategies", multiple=True, required=True, metavar="SPEC[,SPEC...]",
              help="Arms to compare: NAME[:KEY=VALUE...][@LABEL], comma-separated or repeated "
                   "(e.g. easy,hard,random  or  map:variant=rand@uniform).")
@click.option("--subset", "subsets", multiple=True,
              help="A saved subset to compare too (must be selected after the split). Repeatable.")
@click.option("--budgets", required=True, help="Labelled training pairs per run, e.g. 100,200,400,max.")
@click.option("--seeds", default="10", show_default=True, help="A count (seeds 0..N-1) or a list (3,7,11).")
@click.option("--learner", type=click.Choice(["reward-head", "dpo"]), default="reward-head", show_default=True,
              help="reward-head: Bradley–Terry on an embedding set (CPU, seconds); dpo: `train` + `eval`.")
@click.option("--embedding", default=None,
              help="The reward head's response-embedding set (default: the only one); also the default "
                   "--embedding of every strategy that takes one.")
@click.option("--reg", "C", type=float, default=None, help="reward-head: L2 strength C of the logistic fit.  [default: 1.0]")
@_dpo_option("model")
@_dpo_option("ref_model")
@_dpo_option("loss", type=click.Choice(LOSSES))
@_dpo_option("beta")
@_dpo_option("learning_rate", "--lr")
@_dpo_option("epochs")
@_dpo_option("batch_size")
@_dpo_option("max_length")
@device_option(TrainConfig, from_recipe=True)
@click.option("--keep-runs", is_flag=True, default=None, help="dpo: keep each run's subset and model.")
@click.option("--baseline", default=None, help="Arm the paired differences are taken against. [random / random-half]")
@click.option("--eval-pairs", type=int, default=None,
              help="Score on a fixed hashed sample of this many held-out pairs (default: all).")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output folder: table.txt, results.json, manifest.json, curve.png, runs.jsonl.")
@click.option("--overwrite", is_flag=True, help="Write over an earlier comparison in --out.")
@click.option("--title", default=None, help="Title of the plot (default: the learner and its input).")
@json_option("the results (cells, runs, manifest)")
def compare(store: Store, strategies: tuple[str, ...], subsets: tuple[str, ...], budgets: str, seeds: str,
            learner: str, embedding: str | None, baseline: str | None, eval_pairs: int | None, out: str,
            overwrite: bool, title: str | None, as_json: bool, **learner_options: Any) -> None:
    """Which selection helps on this data, at what label budget? Train a learner on each strategy's
    pairs at each budget and seed, score it on the held-out pairs, report mean and 95% interval.

    Needs a held-out split (`pairsift split`) and pair features. At budget N every strategy that
    picks one pair per prompt gets the same N prompts (a seeded draw per seed) and differs only
    in which pair it took; pool-level strategies (the halves, map, top) draw N pairs from their own
    selection. Re-running with the same arguments gives the same numbers.

    Example:

    \b
      pairsift compare -s easy-half,hard-half,random-half --budgets 100,200,max --embedding minilm --out cmp-hh
      pairsift compare -s easy,hard,random -s dcrm:logprobs=ref -s map:variant=rand@uniform --budgets 50,100 --out cmp
      pairsift compare -s easy-half,hard-half,random-half --budgets 32 --seeds 3 --learner dpo --model PATH --out cmp-dpo
    """
    from ..compare.runner import compare as run

    given = {k: v for k, v in learner_options.items() if v is not None}
    if learner == "reward-head":
        opts, extra = {"C": given.pop("C", None)}, sorted(given)
    else:
        opts, extra = given, (["C"] if "C" in given else [])
        opts.pop("C", None)
    if extra:
        flags = ", ".join("--" + ("reg" if k == "C" else "lr" if k == "learning_rate" else k.replace("_", "-"))
                          for k in extra)
        raise click.UsageError(f"--learner {learner} does not take {flags}")
    with Progress("compare", unit="runs") as bar, contextlib.redirect_stdout(sys.stderr):  # TRL prints its logs
        result = run(store, list(strategies), budgets, seeds, learner, out, subsets=list(subsets), baseline=baseline,
                     eval_pairs=eval_pairs, embedding=embedding, overwrite=overwrite, title=title, progress=bar,
                     **opts)
    echo_report(result, as_json)
    if not as_json:
        click.echo(f"wrote {', '.join(result.paths.values())}", err=True)
