"""`pairsift split` and `pairsift compare`: hold out prompts, then measure which selection helps."""

from __future__ import annotations

import contextlib
import sys

import click

from .options import echo_json, store_option


@click.command()
@store_option
@click.option("--holdout", type=float, default=0.2, show_default=True,
              help="Expected share of prompts held out for evaluation (by prompt, never by pair).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the hash that assigns prompts.")
@click.option("--replace", is_flag=True, help="Replace an existing split made with another seed or fraction.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def split(store, holdout, seed, replace, as_json):
    """Hold out prompts for evaluation: no strategy selects them once the split exists.

    A prompt is held out when a hash of (seed, prompt id) falls below --holdout, so the split is
    deterministic and re-running it after ingesting more data keeps every old assignment.

    \b
    Example:
      pairsift split --holdout 0.2 --seed 0
      pairsift select easy-half --name easy --embedding minilm   # held-out prompts excluded
    """
    from ..compare.split import make_split

    result = make_split(store, holdout=holdout, seed=seed, replace=replace)
    if as_json:
        echo_json(result.to_dict())
        return
    click.echo(result.summary())


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
              help="reward-head: response embedding set [the only one]; also the default of strategies' --embedding.")
@click.option("--reg", "C", type=float, default=None, help="reward-head: L2 strength C of the logistic fit. [1.0]")
@click.option("--model", default=None, help="dpo: the policy to train (also the reference by default).")
@click.option("--ref-model", default=None, help="dpo: reference model. [--model]")
@click.option("--loss", default=None, help="dpo: any `pairsift train` loss. [sigmoid]")
@click.option("--beta", type=float, default=None, help="dpo: beta. [0.1]")
@click.option("--lr", "learning_rate", type=float, default=None, help="dpo: learning rate. [1e-6]")
@click.option("--epochs", type=float, default=None, help="dpo: passes over each run's pairs. [1]")
@click.option("--batch-size", type=int, default=None, help="dpo: pairs per batch. [8]")
@click.option("--max-length", type=int, default=None, help="dpo: prompt+completion tokens. [1024]")
@click.option("--device", default=None, help="dpo: auto, cpu, cuda. [auto]")
@click.option("--keep-runs", is_flag=True, default=None, help="dpo: keep each run's subset and model.")
@click.option("--baseline", default=None, help="Arm the paired differences are taken against. [random / random-half]")
@click.option("--eval-pairs", type=int, default=None,
              help="Score on a fixed hashed sample of this many held-out pairs. [all]")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output folder: table.txt, results.json, manifest.json, curve.png.")
@click.option("--overwrite", is_flag=True, help="Write over an earlier comparison in --out.")
@click.option("--title", default=None, help="Title of the plot. [the learner and its input]")
@click.option("--json", "as_json", is_flag=True, help="Print results (cells, runs, manifest) as JSON.")
def compare(store, strategies, subsets, budgets, seeds, learner, embedding, baseline, eval_pairs, out, overwrite,
            title, as_json, **learner_options):
    """Which selection helps on this data, at what label budget? Train a learner on each strategy's
    pairs at each budget and seed, score it on the held-out pairs, report mean and 95% interval.

    Needs a held-out split (`pairsift split`) and pair features. At budget N every strategy that
    picks one pair per prompt gets the same N prompts (a seeded draw per seed) and differs only
    in which pair it took; pool-level strategies (the halves, map, top) draw N pairs from their own
    selection. Re-running with the same arguments gives the same numbers.

    \b
    Example:
      pairsift split --holdout 0.2 --seed 0
      pairsift compare -s easy-half,hard-half,random-half --budgets 100,200,400,max \\
          --seeds 10 --embedding minilm --out cmp-hh
      pairsift compare -s easy,hard,centroid,random -s dcrm:logprobs=ref \\
          --budgets 50,100 --seeds 5 --out cmp-alpaca
      pairsift compare -s easy,hard,random --budgets 64 --seeds 3 --learner dpo \\
          --model PATH --out cmp-dpo
    """
    from ..compare.runner import compare as run
    from ..compare.runner import plan as _  # noqa: F401  (import errors surface before the bar)

    if learner == "reward-head":
        opts = {"C": learner_options["C"]}
        extra = [k for k, v in learner_options.items() if k != "C" and v is not None]
    else:
        opts = {k: v for k, v in learner_options.items() if k != "C"}
        extra = ["C"] if learner_options["C"] is not None else []
    if extra:
        flags = ", ".join("--" + ("reg" if k == "C" else k.replace("_", "-")) for k in extra)
        raise click.UsageError(f"--learner {learner} does not take {flags}")
    bar = _Bar()
    with contextlib.redirect_stdout(sys.stderr):  # TRL prints its logs; stdout is for results
        try:
            result = run(store, list(strategies), budgets, seeds, learner, out, subsets=list(subsets),
                         baseline=baseline, eval_pairs=eval_pairs, embedding=embedding, overwrite=overwrite,
                         title=title, progress=bar, **opts)
        finally:
            bar.close()
    if as_json:
        echo_json(result.to_dict())
        return
    click.echo(result.table)
    click.echo(f"wrote {', '.join(result.paths.values())}", err=True)


class _Bar:
    """A progress bar over the runs on stderr, created on the first report (after validation)."""

    def __init__(self):
        self.bar = None

    def __call__(self, done: int, total: int, what: str) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="compare", unit="run", file=sys.stderr, dynamic_ncols=True)
        self.bar.set_postfix_str(what, refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
