"""The model card (README.md) of a run folder: what was trained, on what, with which loss.

TRL's own card says "fine-tuned version of [None]" for a local base model and "trained with
DPO" whatever the loss; this one names the base model as given, the loss (RPO runs say relative
preference optimisation), LoRA when used, the subset with its strategy, parameters and seed,
and the store and table versions the pairs were read at. It replaces TRL's card at every
checkpoint save and at the end of the run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: What each --loss is, in words, and the tag a hub search would use.
LOSS_NAMES: dict[str, tuple[str, str]] = {
    "sigmoid": ("DPO (direct preference optimisation, sigmoid loss)", "dpo"),
    "ipo": ("IPO (identity preference optimisation)", "ipo"),
    "hinge": ("SLiC (sequence likelihood calibration, hinge loss)", "slic"),
    "rpo": ("RPO (relative preference optimisation), paired: every chosen response contrasted with every "
            "rejected one in the batch, weighted by prompt-embedding similarity", "rpo"),
    "rpo-unpaired": ("RPO (relative preference optimisation), unpaired: chosen and rejected responses from "
                     "different prompts, weighted by prompt-embedding similarity", "rpo"),
    "rpo-diagonal": ("RPO (relative preference optimisation), diagonal variant: the own pair weighted by "
                     "diagonal_weight, the other pairs of the batch share the rest", "rpo"),
}


def _is_hub_id(name: str) -> bool:
    """A Hub repository id (``org/name``), not a local folder: only those belong in ``base_model``."""
    return bool(name) and not Path(name).exists() and name.count("/") == 1 and not name.startswith((".", "/"))


def model_card(manifest: dict[str, Any]) -> str:
    """The README.md text of a run, from its pairsift manifest (``TrainReport.to_dict()``)."""
    import yaml

    config = manifest.get("config", {})
    subset = manifest.get("subset", {})
    store = manifest.get("store", {})
    loss = config.get("loss", "sigmoid")
    loss_text, loss_tag = LOSS_NAMES.get(loss, (loss, loss))
    base = str(config.get("model") or "unknown")
    peft = bool(config.get("use_peft"))

    front: dict[str, Any] = {"library_name": "peft" if peft else "transformers",
                             "tags": sorted({"pairsift", "trl", loss_tag, *(["lora"] if peft else [])})}
    if _is_hub_id(base):
        front["base_model"] = base
    lines = ["---", yaml.safe_dump(front, sort_keys=True).strip(), "---", ""]
    lines += [f"# {Path(manifest.get('output') or 'run').name}", ""]
    what = "LoRA adapters for" if peft else "A fine-tuned version of"
    trl_version = (manifest.get("versions") or {}).get("trl")
    lines.append(f"{what} `{base}`, trained with {loss_text}, by pairsift"
                 + (f" on TRL {trl_version}." if trl_version else "."))
    lines.append("")
    lines += ["## Training data", ""]
    counts = subset.get("counts") or {}
    n = manifest.get("n_pairs", counts.get("selected"))
    lines.append(f"- subset: `{subset.get('name')}` ({n:,} preference pairs)" if isinstance(n, int)
                 else f"- subset: `{subset.get('name')}`")
    lines.append(f"- selection strategy: `{subset.get('strategy')}`")
    params = {k: v for k, v in (subset.get("params") or {}).items() if v is not None}
    lines.append(f"- strategy parameters: `{json.dumps(params, sort_keys=True, default=str)}`")
    lines.append(f"- selection seed: {subset.get('seed')}")
    if counts:
        lines.append(f"- selection counts: `{json.dumps(counts, sort_keys=True, default=str)}`")
    lines.append(f"- store: `{store.get('uri')}`, tag `{store.get('tag') or subset.get('tag')}`")
    versions = store.get("versions") or subset.get("store_versions") or {}
    lines.append("- table versions read: " + ", ".join(f"`{t}` v{v}" for t, v in sorted(versions.items())))
    lines.append("")
    lines += ["## Training procedure", ""]
    lines.append(f"- loss: `{loss}`, beta {config.get('beta')}"
                 + (f", tau {config.get('tau')}" if loss in ("rpo", "rpo-unpaired") else "")
                 + (f", diagonal weight {config.get('diagonal_weight')}" if loss == "rpo-diagonal" else ""))
    ref = config.get("ref_model")
    if peft and not ref:
        ref_text = "the base model with the adapters disabled"
    else:
        ref_text = f"`{ref or base}`"
    lines.append(f"- reference model: {ref_text}")
    if peft:
        lines.append(f"- LoRA: r {config.get('lora_r')}, alpha {config.get('lora_alpha')}, dropout "
                     f"{config.get('lora_dropout')}, target modules {config.get('lora_target_modules') or 'peft default'}")
    lines.append(f"- {manifest.get('max_steps')} optimizer steps, learning rate {config.get('learning_rate')}, "
                 f"{config.get('batch_size')} pairs per device x {config.get('gradient_accumulation_steps')} "
                 f"accumulation x {manifest.get('world_size', 1)} processes, max length {config.get('max_length')}, "
                 f"seed {config.get('seed')}")
    if config.get("dpo"):
        lines.append(f"- other trl.DPOConfig fields: `{json.dumps(config['dpo'], sort_keys=True, default=str)}`")
    losses = [h["loss"] for h in manifest.get("log_history") or [] if "loss" in h]
    if losses:
        lines.append(f"- last logged training loss: {losses[-1]:.4f}")
    lines.append("")
    lines += ["## Reproduce", "", "Everything above is in `pairsift_manifest.json` beside this card "
              "(the full config and the store versions).", ""]
    vers = manifest.get("versions") or {}
    if vers:
        lines += ["### Framework versions", ""]
        lines += [f"- {k}: {v}" for k, v in sorted(vers.items())]
        lines.append("")
    return "\n".join(lines)


def write_model_card(out_dir: str | Path, manifest: dict[str, Any]) -> Path:
    path = Path(out_dir) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(model_card(manifest))
    return path
