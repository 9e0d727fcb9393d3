"""The trl.DPOConfig of a run: pairsift's options, its defaults, and the recipe's ``dpo:`` fields.

One place builds the keyword arguments, so no field is ever passed twice (the old raw
``TypeError: got multiple values for keyword argument``) and whatever TRL or transformers
refuses comes back as one :class:`~pairsift.errors.UsageError` line, never a traceback.
Which fields are merged, refused or defaulted is documented in :mod:`pairsift.train.config`.
"""

from __future__ import annotations

from typing import Any

from ..errors import MissingDependency, UsageError
from .config import TRL_LOSSES, TrainConfig, _did_you_mean

#: pairsift's defaults for DPOConfig fields it does not own: a `dpo:` value replaces them.
DEFAULTS: dict[str, Any] = {"dataloader_num_workers": 0}

#: --report-to names whose package is not the name itself.
_PACKAGES = {"comet_ml": "comet-ml", "azure_ml": "azureml-core", "tensorboard": "tensorboard"}


def report_to(config: TrainConfig) -> list[str]:
    """The trackers of --report-to, checked: known to transformers and installed (else the pip line)."""
    from transformers.integrations.integration_utils import (
        INTEGRATION_TO_CALLBACK,
        get_available_reporting_integrations,
    )

    names = config.report_to_list
    if names == ["none"]:
        return []
    if "none" in names:
        raise UsageError(f"--report-to: 'none' cannot be combined with other trackers ({', '.join(names)})")
    if names == ["all"]:
        return get_available_reporting_integrations()
    known = sorted(INTEGRATION_TO_CALLBACK)
    available = set(get_available_reporting_integrations())
    for name in names:
        if name not in INTEGRATION_TO_CALLBACK:
            raise UsageError(f"--report-to: unknown tracker '{name}'{_did_you_mean(name, known)} "
                             f"(known: none, all, {', '.join(known)})")
        if name not in available:
            raise MissingDependency(
                f"--report-to {name}: the {name} package is not installed: pip install {_PACKAGES.get(name, name)}"
            )
    return names


def dpo_kwargs(config: TrainConfig, *, max_steps: int, use_cpu: bool, bf16: bool) -> dict[str, Any]:
    """Keyword arguments of trl.DPOConfig for this run (config already validated)."""
    owned = dict(
        output_dir=config.output_dir,
        loss_type=[config.loss] if config.loss in TRL_LOSSES else ["sigmoid"],
        beta=config.beta,
        learning_rate=config.learning_rate,
        max_steps=max_steps,
        num_train_epochs=1.0,  # never read: max_steps bounds the run (the stream has no length)
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        max_length=config.max_length,
        seed=config.seed,
        logging_steps=config.logging_steps,
        save_strategy="steps" if config.save_steps else "no",
        save_steps=config.save_steps or 500,
        report_to=report_to(config) or "none",
        use_cpu=use_cpu,
        bf16=bf16,
        activation_checkpointing=config.gradient_checkpointing,
    )
    clash = set(owned) & set(config.dpo)
    if clash:  # validate() refuses these; a config built around it must not reach TRL
        raise UsageError(f"dpo: {', '.join(sorted(clash))} are set from pairsift options")
    kwargs = {**DEFAULTS, **config.dpo, **owned}
    if kwargs.get("dataloader_num_workers"):
        kwargs.setdefault("dataloader_multiprocessing_context", "spawn")  # Lance is not fork-safe
    kwargs.pop("model_init_kwargs", None)  # pairsift loads the models itself: see model_init_kwargs()
    return kwargs


def model_init_kwargs(config: TrainConfig) -> dict[str, Any]:
    """``dpo: {model_init_kwargs: {...}}`` go to pairsift's own model loads (TRL would ignore them
    for a model passed as an object)."""
    value = config.dpo.get("model_init_kwargs") or {}
    if not isinstance(value, dict):
        raise UsageError("dpo: model_init_kwargs must be a mapping (e.g. {attn_implementation: sdpa})")
    return dict(value)


def make_dpo_config(config: TrainConfig, *, max_steps: int, use_cpu: bool, bf16: bool) -> Any:
    """trl.DPOConfig for the run; anything TRL or transformers refuses becomes one UsageError."""
    from trl import DPOConfig

    kwargs = dpo_kwargs(config, max_steps=max_steps, use_cpu=use_cpu, bf16=bf16)
    try:
        return DPOConfig(**kwargs)
    except (TypeError, ValueError, ImportError) as e:
        given = ", ".join(sorted(config.dpo)) or "none"
        raise UsageError(f"trl.DPOConfig refused the settings (dpo fields given: {given}): {e}") from e


def lora_config(config: TrainConfig) -> Any:
    """peft.LoraConfig from the --lora-* options (causal LM, no bias)."""
    try:
        from peft import LoraConfig
    except ImportError as e:
        raise MissingDependency("--use-peft needs peft: pip install 'pairsift[train]' (or pip install peft)") from e
    return LoraConfig(
        task_type="CAUSAL_LM",
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules,
        bias="none",
    )
