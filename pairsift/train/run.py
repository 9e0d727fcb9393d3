"""`pairsift train`: align a model on a saved subset, streamed from the store into TRL.

sigmoid (DPO), ipo and hinge (SLiC) are TRL's own DPOTrainer losses. The three relative
preference optimisation variants (docs/METHODS.md §4) are :class:`RPOTrainer`, a small DPOTrainer
subclass that reads stored prompt embeddings from the stream (never re-encodes them).

A reference model is always passed explicitly (``--ref-model``, else a second load of the policy
from its path, else a deep copy of an in-memory policy): TRL would otherwise reload it from the
config's ``_name_or_path``, which fails for models built from a config and may reach the hub.
With ``--use-peft`` (LoRA) no second copy is loaded: as in TRL, the reference is the policy with
its adapters disabled (unless ``--ref-model`` names another model).

The run directory gets the model (or, with LoRA, the adapters), the tokenizer, a model card
(README.md, :mod:`pairsift.train.card`) and ``pairsift_manifest.json`` tying them to the subset,
the store versions it read and the full config. The last step is always logged, so a short run
prints its loss.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..compute.device import resolve_device
from ..errors import MissingDependency, PairsiftError, UsageError
from ..report import Report, plural
from ..store import Store
from ..store.subsets import read_manifest
from .args import lora_config, make_dpo_config, model_init_kwargs
from .card import write_model_card
from .config import TRL_LOSSES, TrainConfig
from .stream import (
    detect_world,
    max_steps_for,
    read_members,
    subset_stream,
)

MANIFEST = "pairsift_manifest.json"


@dataclass
class TrainReport(Report):
    """What a training run did; ``to_dict()`` is the manifest saved as ``pairsift_manifest.json``."""

    output: str
    subset: dict[str, Any]
    n_pairs: int
    max_steps: int
    kind: str = "pairsift.train"
    created_at: str = ""
    store: dict[str, Any] = field(default_factory=dict)
    world_size: int = 1
    device: str = "cpu"
    bf16: bool = False
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    log_history: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        losses = [h["loss"] for h in self.log_history if "loss" in h]
        last = f", last logged loss {losses[-1]:.4f}" if losses else ""
        return (f"trained on subset '{self.subset.get('name')}' ({plural(self.n_pairs, 'pair')}, "
                f"{plural(self.max_steps, 'step')}{last}); model and manifest in {self.output}")


# ---- models and devices -------------------------------------------------------------------------


def precision(device: str = "auto", bf16: bool | None = None) -> tuple[bool, bool]:
    """(use_cpu, bf16) for the trainer from --device and --bf16; bf16 defaults to on where CUDA has it.

    ``cuda:N`` makes device N the current CUDA device (the trainer places the model there).
    """
    import torch

    resolved = resolve_device(device)
    if resolved == "cpu":
        if bf16:
            raise UsageError("--bf16 needs a GPU")
        return True, False
    if ":" in resolved:
        torch.cuda.set_device(int(resolved.partition(":")[2]))
    return False, torch.cuda.is_bf16_supported() if bf16 is None else bool(bf16)


def load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(path: str, **init_kwargs: Any) -> Any:
    """A causal LM in fp32 unless `init_kwargs` say otherwise (mixed precision is the trainer's job).

    A LoRA run folder (``adapter_config.json``, what ``--use-peft`` saves) loads as its base model
    with the adapters merged in, so eval and stability read it like any checkpoint.
    """
    import torch
    from transformers import AutoModelForCausalLM

    init_kwargs.setdefault("dtype", torch.float32)
    adapter = Path(path) / "adapter_config.json"
    try:
        if adapter.exists():
            return _load_adapter(Path(path), init_kwargs)
        return AutoModelForCausalLM.from_pretrained(path, **init_kwargs)
    except OSError as e:
        raise UsageError(f"cannot load model '{path}': {e}") from e


def _load_adapter(path: Path, init_kwargs: dict[str, Any]) -> Any:
    try:
        from peft import PeftModel
    except ImportError as e:
        raise MissingDependency(f"{path} holds LoRA adapters: loading them needs peft (pip install peft)") from e
    from transformers import AutoModelForCausalLM

    base = json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise UsageError(f"{path}/adapter_config.json does not name its base model (base_model_name_or_path)")
    model = AutoModelForCausalLM.from_pretrained(base, **init_kwargs)
    return PeftModel.from_pretrained(model, str(path)).merge_and_unload()


def reference_for(policy: Any, policy_path: str | None, ref_path: str | None, **init_kwargs: Any) -> Any:
    """The frozen reference: --ref-model, else the policy reloaded from its path, else a deep copy."""
    if ref_path:
        ref = load_model(ref_path, **init_kwargs)
    elif policy_path:
        ref = load_model(policy_path, **init_kwargs)
    else:
        ref = copy.deepcopy(policy)
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


# ---- RPO as a DPOTrainer subclass -----------------------------------------------------------------


def _rpo_classes() -> tuple[type, type]:
    """Build the collator and trainer classes on first use (keeps trl out of `import pairsift`)."""
    import torch
    from trl import DPOTrainer
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    from .losses import rpo_diagonal_loss, rpo_loss

    class RPOCollator(DataCollatorForPreference):
        """TRL's preference collator plus the rows' stored prompt embeddings as a [B, D] fp32 tensor."""

        def torch_call(self, examples: list[dict]) -> dict:
            out = super().torch_call(examples)
            if "prompt_emb" in examples[0]:
                out["prompt_emb"] = torch.tensor([ex["prompt_emb"] for ex in examples], dtype=torch.float32)
            return out

    class RPOTrainer(DPOTrainer):
        """Relative preference optimisation: rpo (paired), rpo-unpaired, rpo-diagonal.

        rpo-unpaired on a paired subset: within each batch, pairs at even positions contribute
        their chosen response and pairs at odd positions their rejected one, so no chosen and
        rejected item share a prompt; each item is weighted by its own prompt's embedding.
        """

        def __init__(self, *args: Any, rpo_variant: str = "rpo", tau: float = 0.5, diagonal_weight: float = 0.8,
                     **kw: Any) -> None:
            if rpo_variant not in ("rpo", "rpo-unpaired", "rpo-diagonal"):
                raise UsageError(f"--loss: '{rpo_variant}' is not an RPO variant")
            self.rpo_variant = rpo_variant
            self.rpo_tau = tau
            self.rpo_diagonal_weight = diagonal_weight
            super().__init__(*args, **kw)

        def _set_signature_columns_if_needed(self):
            super()._set_signature_columns_if_needed()
            if "prompt_emb" not in self._signature_columns:
                self._signature_columns = [*self._signature_columns, "prompt_emb"]

        def _sequence_logps(self, model: Any, batch: dict) -> torch.Tensor:
            """Summed completion-token log-probs of each row, in fp32 (TRL's fused LM head)."""
            labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
            out = model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                labels=labels,
                use_cache=False,
                fused_lm_head=True,
            )
            seq_len = batch["completion_mask"].shape[1] - 1
            return out.log_probs[:, -seq_len:].float().sum(dim=1)

        def compute_loss(self, model: Any, inputs: dict, return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            mode = "train" if self.model.training else "eval"
            emb = inputs.pop("prompt_emb", None)  # never forwarded to the model
            keys = ("input_ids", "attention_mask", "completion_mask")
            n_pairs = inputs["input_ids"].shape[0] // 2
            device = inputs["input_ids"].device
            if self.rpo_variant == "rpo-unpaired":
                chosen_at = torch.arange(0, n_pairs, 2, device=device)
                rejected_at = torch.arange(1, n_pairs, 2, device=device)
                rows = torch.cat([chosen_at, n_pairs + rejected_at])
                batch = {k: inputs[k][rows] for k in keys}
                n_chosen = len(chosen_at)
            else:
                batch = {k: inputs[k] for k in keys}
                n_chosen = n_pairs
            logps = self._sequence_logps(model, batch)
            with torch.no_grad():
                if self.ref_model is None:  # LoRA: the reference is the policy with its adapters disabled
                    from trl.trainer.utils import use_adapter

                    with use_adapter(self.accelerator.unwrap_model(self.model), adapter_name=None):
                        ref_logps = self._sequence_logps(model, batch)
                else:
                    ref_logps = self._sequence_logps(self.ref_model, batch)
            ratios = logps - ref_logps
            chosen, rejected = ratios[:n_chosen], ratios[n_chosen:]

            metrics = {}
            if self.rpo_variant == "rpo-diagonal":
                loss = rpo_diagonal_loss(chosen, rejected, beta=self.beta, diagonal_weight=self.rpo_diagonal_weight)
            else:
                if emb is None:
                    raise UsageError("RPO needs prompt embeddings in the batch (stream with prompt_embeddings=SET)")
                emb = emb.to(device)
                if self.rpo_variant == "rpo":
                    loss, w = rpo_loss(chosen, rejected, emb, beta=self.beta, tau=self.rpo_tau)
                    metrics["rpo/weight_own_prompt"] = w.diagonal().mean()
                elif len(chosen) == 0 or len(rejected) == 0:
                    loss = logps.sum() * 0.0  # a batch with no chosen or no rejected item: skipped
                else:
                    loss, _ = rpo_loss(
                        chosen, rejected, emb[chosen_at], emb[rejected_at], beta=self.beta, tau=self.rpo_tau
                    )

            with torch.no_grad():
                r_c, r_r = self.beta * chosen.detach(), self.beta * rejected.detach()
                metrics["rewards/chosen"] = r_c.mean() if len(r_c) else torch.tensor(0.0, device=device)
                metrics["rewards/rejected"] = r_r.mean() if len(r_r) else torch.tensor(0.0, device=device)
                metrics["rewards/margins"] = metrics["rewards/chosen"] - metrics["rewards/rejected"]
                if self.rpo_variant != "rpo-unpaired":
                    metrics["rewards/accuracies"] = (r_c > r_r).float().mean()
                metrics["logps/chosen"] = logps[:n_chosen].detach().mean() if n_chosen else metrics["rewards/chosen"] * 0
                metrics["logps/rejected"] = logps[n_chosen:].detach().mean() if len(r_r) else metrics["rewards/chosen"] * 0
                for name, value in metrics.items():
                    self._metrics[mode][name].append(self.accelerator.gather_for_metrics(value.reshape(1)).mean().item())
            return (loss, None) if return_outputs else loss

    return RPOCollator, RPOTrainer


# ---- the run ------------------------------------------------------------------------------------------


def _final_step_logger() -> Any:
    """A callback that logs the last step whatever --logging-steps is: every run reports its final loss."""
    from transformers import TrainerCallback

    class LogLastStep(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if state.global_step >= state.max_steps:
                control.should_log = True
            return control

    return LogLastStep()


def build_trainer(
    store: Store,
    config: TrainConfig,
    *,
    model: Any = None,
    ref_model: Any = None,
    tokenizer: Any = None,
    train_dataset: Any = None,
    callbacks: list | None = None,
    world_size: int | None = None,
) -> tuple[Any, dict[str, Any]]:
    """A ready DPOTrainer / RPOTrainer and what the manifest needs. `model`/`ref_model`/`tokenizer`
    may be given as objects (tests, notebooks); otherwise they are loaded from config paths.
    `train_dataset` replaces the subset stream (benchmarks compare against a map-style Dataset)."""
    config.validate()
    from trl import DPOTrainer

    info = read_manifest(store, config.subset)
    members = read_members(store, config.subset)
    n_pairs = members.height
    world = world_size or detect_world()[1]
    max_steps = config.max_steps or max_steps_for(
        n_pairs, config.epochs or 1.0, config.batch_size, config.gradient_accumulation_steps, world
    )
    use_cpu, bf16 = precision(config.device, config.bf16)
    # Every setting is checked before a model is loaded.
    args = make_dpo_config(config, max_steps=max_steps, use_cpu=use_cpu, bf16=bf16)
    peft_config = lora_config(config) if config.use_peft else None
    init_kwargs = model_init_kwargs(config)

    policy_path = config.model if model is None else None
    if model is None:
        model = load_model(config.model, **init_kwargs)
    if tokenizer is None:
        tokenizer = load_tokenizer(config.model if policy_path else (config.ref_model or config.model))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if ref_model is None and (config.ref_model or not config.use_peft):
        ref_model = reference_for(model, policy_path, config.ref_model, **init_kwargs)

    if train_dataset is None:
        train_dataset = subset_stream(
            store,
            config.subset,
            seed=config.seed,
            world_size=world,
            read_batch_size=config.read_batch_size,
            prompt_embeddings=config.prompt_embeddings if config.uses_embeddings else None,
        )

    common = dict(
        model=model, ref_model=ref_model, args=args, train_dataset=train_dataset,
        processing_class=tokenizer, callbacks=[*(callbacks or []), _final_step_logger()],
        peft_config=peft_config,
    )
    try:
        if config.loss in TRL_LOSSES:
            trainer = DPOTrainer(**common)
        else:
            collator_cls, trainer_cls = _rpo_classes()
            collator = collator_cls(
                pad_token_id=tokenizer.pad_token_id,
                max_length=config.max_length,
                truncation_mode=args.truncation_mode,
                pad_to_multiple_of=args.pad_to_multiple_of,
            )
            trainer = trainer_cls(
                **common, data_collator=collator, rpo_variant=config.loss, tau=config.tau,
                diagonal_weight=config.diagonal_weight,
            )
    except (TypeError, ValueError) as e:
        if isinstance(e, PairsiftError):
            raise
        raise UsageError(f"trl.DPOTrainer refused the run's settings: {e}") from e
    meta = {"subset": info, "n_pairs": n_pairs, "max_steps": max_steps, "world_size": world,
            "use_cpu": use_cpu, "bf16": bf16}

    def card(*_: Any, **__: Any) -> None:
        # TRL writes its own card at each checkpoint ("fine-tuned version of [None]"): ours instead.
        if trainer.is_world_process_zero():
            write_model_card(config.output_dir, run_manifest(store, config, meta, trainer, None))

    trainer.create_model_card = card
    if args.dataloader_num_workers:
        _picklable_for_workers(trainer.data_collator)
    return trainer, meta


def _reduce_with_dill(dataset: Any) -> tuple[Any, tuple[bytes]]:
    import dill

    return dill.loads, (dill.dumps(dataset, recurse=True),)


def _picklable_for_workers(collator: Any) -> None:
    """Let spawned DataLoader workers receive TRL's prepared stream and the collator.

    TRL tokenises an IterableDataset with local functions and a lambda (``_prepare_dataset``),
    and the RPO collator is a class built on first use: the standard pickler cannot send either
    to a spawned worker, and Lance rules out fork. datasets already depends on dill, which
    serialises them by value, so these two types go to multiprocessing workers through dill (a
    reducer on multiprocessing's pickler only; every other object pickles as usual).
    """
    from multiprocessing.reduction import ForkingPickler

    import datasets

    ForkingPickler.register(datasets.IterableDataset, _reduce_with_dill)
    if "<locals>" in type(collator).__qualname__:
        ForkingPickler.register(type(collator), _reduce_with_dill)


def train(
    store: Store,
    config: TrainConfig,
    *,
    model: Any = None,
    ref_model: Any = None,
    tokenizer: Any = None,
    callbacks: list | None = None,
) -> TrainReport:
    """Train on a subset; save the model (adapters with --use-peft), tokenizer, model card and
    manifest to the output dir; report the run."""
    trainer, meta = build_trainer(
        store, config, model=model, ref_model=ref_model, tokenizer=tokenizer, callbacks=callbacks
    )
    result = trainer.train()
    out = Path(config.output_dir)
    trainer.save_model(str(out))
    manifest = run_manifest(store, config, meta, trainer, result)
    if trainer.is_world_process_zero():
        trainer.processing_class.save_pretrained(str(out))
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        write_model_card(out, manifest)
    return TrainReport(**manifest)


def run_manifest(store: Store, config: TrainConfig, meta: dict[str, Any], trainer: Any, result: Any) -> dict[str, Any]:
    import datasets
    import torch
    import transformers
    import trl

    from .. import __version__

    info = meta["subset"]
    out = Path(config.output_dir)
    checkpoints = sorted(
        (str(p) for p in out.glob("checkpoint-*") if p.is_dir()), key=lambda p: int(p.rsplit("-", 1)[-1])
    )
    return {
        "kind": "pairsift.train",
        "created_at": datetime.now(timezone.utc).isoformat(),
        "output": str(out.resolve()),
        "store": {"uri": store.uri, "versions": info.store_versions, "tag": info.tag},
        "subset": info.to_dict(),
        "n_pairs": meta["n_pairs"],
        "max_steps": meta["max_steps"],
        "world_size": meta["world_size"],
        "device": "cpu" if meta["use_cpu"] else "cuda",
        "bf16": meta["bf16"],
        "config": config.to_dict(),
        "metrics": dict(result.metrics) if result is not None else {},
        "log_history": trainer.state.log_history,
        "checkpoints": checkpoints,
        "versions": {
            "pairsift": __version__, "trl": trl.__version__, "transformers": transformers.__version__,
            "torch": torch.__version__, "datasets": datasets.__version__,
        },
        "env": {k: os.environ[k] for k in ("RANK", "WORLD_SIZE") if k in os.environ},
    }
