"""`pairsift train`, `eval` and `stability`: TRL on a subset streamed from the store."""

from __future__ import annotations

import contextlib
import sys

import click

from .options import echo_json, store_option


@click.command()
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
    from ..train.config import TrainConfig
    from ..train.run import train as run

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


@click.command("eval")
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
    from ..train.evaluate import evaluate

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


@click.command()
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
    from ..train.stability import stability as run

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
