"""`pairsift eval`: what the papers measure, on a held-out subset (docs/METHODS.md §1 evaluation).

For each labelled pair, with ``D = logp_theta(y|x) - logp_ref(y|x)`` summed over TRL's
completion tokens (same tokenisation, EOS and truncation as training):

* ``loss`` — DPO loss ``-log sigma(beta * (D+ - D-))``, mean over pairs;
* ``reward_margin_beta`` — ``beta * (D+ - D-)``, mean: the margin WITH beta (TRL's ``rewards/margins``);
* ``reward_margin_no_beta`` — ``D+ - D-``, mean: WITHOUT beta (what the REAL reference code logs);
* ``reward_accuracy`` — fraction of pairs with ``D+ > D-`` (ties count as wrong, as in TRL).

Given several checkpoints (or a run directory with ``checkpoint-N`` folders) it evaluates each
one against the same reference log-probs: that list is the real training curve (``plot=`` draws
it: loss, accuracy and margin against the step).

Pairs TRL drops are counted, never silently: with ``keep_start`` truncation TRL drops every pair
whose prompt alone is ``max_length`` tokens or more (no completion token would be left), so the
report says how many and suggests a larger ``--max-length``.

Held out means held out: when a model comes from a pairsift run folder, its manifest names the
subset it was trained on; a pair of the evaluated subset that is also in that training subset
makes ``evaluate`` refuse (``allow_overlap=True`` / ``--allow-overlap`` evaluates anyway and the
report records the overlap). Shared prompts with different pairs are reported as a note.

TRL's trainer wants an output directory even though nothing is saved: each evaluation gets a
private temporary one, removed afterwards, so two evaluations never share or leave files.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PairsiftError, UsageError
from ..report import Report, plural
from ..store import Store
from .config import EVAL_DEFAULTS
from .run import MANIFEST, load_model, load_tokenizer, precision
from .stream import read_members, subset_table


@dataclass
class EvalReport(Report):
    """One row of metrics per evaluated model (in order: the training curve)."""

    subset: str
    ref_model: str
    beta: float
    n_pairs_in_subset: int
    results: list[dict[str, Any]] = field(default_factory=list)
    margins: str = "reward_margin_beta includes beta; reward_margin_no_beta does not"
    n_pairs_dropped: int = 0
    dropped_reason: str | None = None
    overlap: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    plot: str | None = None

    def summary(self) -> str:
        lines = [
            f"subset {self.subset} ({plural(self.n_pairs_in_subset, 'pair')}), reference {self.ref_model}, "
            f"beta {self.beta} (margin_beta includes beta, margin_raw does not)",
        ]
        if self.n_pairs_dropped:
            lines.append(f"{plural(self.n_pairs_dropped, 'pair')} of {self.n_pairs_in_subset:,} not evaluated: "
                         f"{self.dropped_reason}")
        lines += [f"note: {n}" for n in self.notes]
        lines.append(f"{'step':>6} {'loss':>8} {'margin_beta':>12} {'margin_raw':>11} {'accuracy':>9} {'pairs':>6}  model")
        for r in self.results:
            step = "-" if r["step"] is None else r["step"]
            lines.append(
                f"{step:>6} {r['loss']:>8.4f} {r['reward_margin_beta']:>12.4f} {r['reward_margin_no_beta']:>11.4f} "
                f"{r['reward_accuracy']:>9.3f} {r['n_pairs']:>6}  {r['model']}"
            )
        if self.plot:
            lines.append(f"curve plotted to {self.plot}")
        return "\n".join(lines)


def preference_metrics(
    policy_chosen: Any, policy_rejected: Any, ref_chosen: Any, ref_rejected: Any, beta: float
) -> dict[str, Any]:
    """Pairwise metrics from summed log-probs (arrays of equal length), in float64."""
    pc, pr, rc, rr = (np.asarray(x, dtype=np.float64) for x in (policy_chosen, policy_rejected, ref_chosen, ref_rejected))
    margin = (pc - rc) - (pr - rr)
    if margin.size == 0:
        raise UsageError("no pair left to evaluate (all prompts longer than --max-length?)")
    return {
        "n_pairs": int(margin.size),
        "beta": beta,
        "loss": float(np.mean(np.logaddexp(0.0, -beta * margin))),  # -log sigma(x) = log(1 + e^-x)
        "reward_margin_beta": float(np.mean(beta * margin)),
        "reward_margin_no_beta": float(np.mean(margin)),
        "reward_accuracy": float(np.mean(margin > 0)),
        "reward_chosen_beta": float(np.mean(beta * (pc - rc))),
        "reward_rejected_beta": float(np.mean(beta * (pr - rr))),
    }


def expand_checkpoints(paths: list[str]) -> list[tuple[str, int | None]]:
    """(path, step) for each model; a run directory expands into its checkpoint-N folders, then itself."""
    out: list[tuple[str, int | None]] = []
    for p in paths:
        path = Path(p)
        ckpts = sorted(
            (c for c in path.glob("checkpoint-*") if c.is_dir() and re.fullmatch(r"checkpoint-\d+", c.name)),
            key=lambda c: int(c.name.split("-")[1]),
        ) if path.is_dir() else []
        for c in ckpts:
            out.append((str(c), int(c.name.split("-")[1])))
        final = _final_step(path)
        if not ckpts or ((path / "config.json").exists() and final != int(ckpts[-1].name.split("-")[1])):
            out.append((p, final))  # the run dir's final model, unless it is the last checkpoint
    return out


def _final_step(path: Path) -> int | None:
    m = re.fullmatch(r"checkpoint-(\d+)", path.name)
    if m:
        return int(m.group(1))
    manifest = path / MANIFEST
    if manifest.exists():
        log = json.loads(manifest.read_text()).get("log_history") or []
        steps = [h.get("step") for h in log if h.get("step") is not None]
        return max(steps) if steps else None
    return None


class _Scorer:
    """Tokenises and collates a held-out subset once with TRL's DPOTrainer, then scores models on it."""

    def __init__(self, rows: list[dict], first_model: Any, ref_model: Any, tokenizer: Any, beta: float,
                 batch_size: int, max_length: int, device: str, scratch: str) -> None:
        import datasets
        from trl import DPOConfig, DPOTrainer

        use_cpu, bf16 = precision(device)
        ds = datasets.Dataset.from_list(rows)
        args = DPOConfig(
            output_dir=scratch, per_device_eval_batch_size=batch_size, per_device_train_batch_size=batch_size,
            max_length=max_length, beta=beta, report_to="none", use_cpu=use_cpu, bf16=bf16,
            save_strategy="no", dataloader_num_workers=0, activation_checkpointing=False, disable_tqdm=True,
        )
        self.trainer = DPOTrainer(model=first_model, ref_model=ref_model, args=args, train_dataset=ds,
                                  eval_dataset=ds, processing_class=tokenizer)
        #: Pairs TRL's preparation dropped (prompt alone >= max_length with keep_start truncation).
        self.n_dropped = len(rows) - len(self.trainer.eval_dataset)
        self.batches = [self.trainer._prepare_inputs(b) for b in self.trainer.get_eval_dataloader()]
        self._ref = None

    def logps(self, model: Any, step: Callable[[], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Summed completion log-probs of every pair under `model`; `step()` after each batch."""
        import torch

        chosen, rejected = [], []
        model.eval()
        with torch.no_grad():
            for batch in self.batches:
                c, r = self.trainer.compute_ref_log_probs(model, batch)
                chosen.append(c.float().cpu().numpy())
                rejected.append(r.float().cpu().numpy())
                if step:
                    step()
        if not chosen:
            return np.zeros(0), np.zeros(0)
        return np.concatenate(chosen), np.concatenate(rejected)

    def reference(self, step: Callable[[], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        if self._ref is None:
            self._ref = self.logps(self.trainer.ref_model, step)
        return self._ref

    def prepare(self, model: Any) -> Any:
        """A freshly loaded checkpoint gets TRL's fused LM head and the trainer's device."""
        from trl.trainer.utils import add_fused_lm_head

        add_fused_lm_head(model)
        return model.to(self.trainer.accelerator.device)


def run_manifest_of(path: str | Path) -> dict[str, Any] | None:
    """The pairsift manifest of a run folder or of one of its checkpoint-N folders (None if neither)."""
    path = Path(path)
    for folder in (path, path.parent):
        manifest = folder / MANIFEST
        if manifest.exists():
            try:
                return json.loads(manifest.read_text())
            except (OSError, ValueError):
                return None
    return None


def check_held_out(store: Store, subset: str, models: list[str], allow_overlap: bool = False
                   ) -> tuple[list[dict[str, Any]], list[str]]:
    """Compare `subset` with the training subset of each run the `models` come from.

    Returns (overlaps, notes). A shared pair raises UsageError unless `allow_overlap`; shared
    prompts (different pairs) and runs that cannot be checked become notes.
    """
    overlaps: list[dict[str, Any]] = []
    notes: list[str] = []
    seen: set[str] = set()
    evaluated = None
    for model in models:
        manifest = run_manifest_of(model)
        if manifest is None:
            continue
        trained = (manifest.get("subset") or {}).get("name")
        uri = (manifest.get("store") or {}).get("uri")
        if not trained or trained in seen:
            continue
        seen.add(trained)
        if uri and str(uri).rstrip("/") != str(store.uri).rstrip("/"):
            notes.append(f"{model} was trained on subset '{trained}' of another store ({uri}): overlap not checked")
            continue
        try:
            train_members = read_members(store, trained)
        except PairsiftError:
            notes.append(f"{model} was trained on subset '{trained}', which is no longer in the store: "
                         "overlap not checked")
            continue
        if evaluated is None:
            evaluated = read_members(store, subset)
        pairs = len(set(evaluated["pair_id"].to_list()) & set(train_members["pair_id"].to_list()))
        prompts = len(set(evaluated["prompt_id"].to_list()) & set(train_members["prompt_id"].to_list()))
        overlaps.append({"model": str(model), "trained_on": trained, "pairs": pairs, "prompts": prompts})
        if pairs and not allow_overlap:
            raise UsageError(
                f"subset '{subset}' is not held out: {plural(pairs, 'pair')} of its {evaluated.height:,} are in "
                f"'{trained}', the subset {model} was trained on. Evaluate on a disjoint subset, or pass "
                "--allow-overlap to evaluate anyway"
            )
        if pairs:
            notes.append(f"OVERLAP: {plural(pairs, 'pair')} of '{subset}' were trained on ('{trained}'); "
                         "these metrics are not held out")
        elif prompts:
            notes.append(f"{plural(prompts, 'prompt')} of '{subset}' also have pairs in the training subset "
                         f"'{trained}' (different pairs)")
    return overlaps, notes


def evaluate(
    store: Store,
    subset: str,
    models: list[Any],
    ref_model: Any,
    *,
    beta: float = EVAL_DEFAULTS.beta,
    batch_size: int = EVAL_DEFAULTS.batch_size,
    max_length: int = EVAL_DEFAULTS.max_length,
    device: str = EVAL_DEFAULTS.device,
    tokenizer: Any = None,
    allow_overlap: bool = False,
    plot: str | Path | None = None,
    progress: Callable[..., None] | None = None,
) -> EvalReport:
    """Evaluate one or more checkpoints on a held-out subset; ``results`` is the training curve.

    `models` are paths (a run directory expands to its checkpoints) or model objects; `ref_model`
    a path or object. The tokenizer is the reference model's unless given. A subset that shares
    pairs with the training subset of a model's run is refused unless `allow_overlap`.
    `progress(done, total, note)` counts forward batches: the reference's, then each model's.
    `plot` writes the curve (loss, accuracy, margin against the step) as a PNG.
    """
    if not beta > 0:
        raise UsageError(f"--beta: must be > 0, got {beta}")
    if not models:
        raise UsageError("--model: give at least one checkpoint")
    entries: list[tuple[object, str, int | None]] = []
    for m in models:
        if isinstance(m, (str, Path)):
            entries.extend((path, path, step) for path, step in expand_checkpoints([str(m)]))
        else:
            entries.append((m, type(m).__name__, None))
    if tokenizer is None and not isinstance(ref_model, (str, Path)):
        raise UsageError("pass tokenizer= when the reference model is an object")
    # The subset first: a wrong name, or a subset that is not held out, fails before any model is loaded.
    table = subset_table(store, subset)
    paths = [str(m) for m in models if isinstance(m, (str, Path))]
    overlap, notes = check_held_out(store, subset, paths, allow_overlap)
    rows = [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in zip(
        table.column("prompt").to_pylist(), table.column("chosen").to_pylist(), table.column("rejected").to_pylist()
    )]
    if not rows:
        raise UsageError(f"subset '{subset}' is empty")
    if tokenizer is None:
        tokenizer = load_tokenizer(str(ref_model))
    ref = load_model(str(ref_model)) if isinstance(ref_model, (str, Path)) else ref_model
    ref.eval()

    def load(obj: Any) -> Any:
        return load_model(obj) if isinstance(obj, str) else obj

    results = []
    with tempfile.TemporaryDirectory(prefix="pairsift-eval-") as scratch:
        first = load(entries[0][0])
        scorer = _Scorer(rows, first, ref, tokenizer, beta, batch_size, max_length, device, scratch)
        n_batches = len(scorer.batches)
        total = n_batches * (len(entries) + 1)
        done = 0

        def ticker(note: str) -> Callable[[], None]:
            def step() -> None:
                nonlocal done
                done += 1
                if progress:
                    progress(done, total, note)
            return step

        if progress:
            progress(0, total, "reference")
        rc, rr = scorer.reference(ticker("reference"))
        for i, (obj, label, step) in enumerate(entries):
            model = scorer.trainer.model if i == 0 else scorer.prepare(load(obj))
            pc, pr = scorer.logps(model, ticker(f"model {i + 1}/{len(entries)}: {Path(str(label)).name}"))
            metrics = preference_metrics(pc, pr, rc, rr, beta)
            results.append({"model": label, "step": step, **metrics})
        n_dropped = scorer.n_dropped
    report = EvalReport(
        subset=subset,
        ref_model=str(ref_model) if isinstance(ref_model, (str, Path)) else type(ref_model).__name__,
        beta=beta,
        n_pairs_in_subset=len(rows),
        results=results,
        n_pairs_dropped=n_dropped,
        dropped_reason=(
            f"TRL drops pairs whose prompt alone is >= --max-length ({max_length}) tokens (no completion token "
            "would be left); raise --max-length to evaluate them" if n_dropped else None
        ),
        overlap=overlap,
        notes=notes,
    )
    if plot:
        from .plot import plot_eval_curve

        report.plot = plot_eval_curve(report, plot)
    return report
