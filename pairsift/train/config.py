"""Typed configs of `train`, `eval` and `stability`, with validation, and YAML recipes.

A recipe is a YAML mapping of :class:`TrainConfig` field names (``-`` or ``_``); command-line
options override it. A field's name is both its recipe key and its option (``learning_rate:``,
``--learning-rate``); ``lr:`` is refused with that name (``--lr`` still works for one release).
Bad values and combinations fail before any model is loaded, naming the option to fix. Unknown
keys are errors with the closest valid names, never silently ignored.

Any other ``trl.DPOConfig`` field goes in the recipe's ``dpo:`` mapping or ``--dpo KEY=VALUE``
(repeatable; the value is read as a YAML scalar). Nothing reaches DPOConfig twice:

* a field that is also a pairsift option of the same name (:data:`SAME_NAME`: ``beta``,
  ``learning_rate``, ``logging_steps``, ``report_to``, ...) is merged into that option; the same
  option given both ways with two values in one place is refused;
* a field pairsift derives from one of its options (:data:`OWNED`: ``output_dir`` from
  ``--output``, ``per_device_train_batch_size`` from ``--batch-size``, ``loss_type`` from
  ``--loss``, ...) is refused with the option to use instead;
* pairsift's own defaults for the rest (``dataloader_num_workers: 0``; ``'spawn'`` workers when
  there are any, as Lance is not fork-safe) give way to the user's value.

Every default and help text is written once, in the fields here: the library functions take
their defaults from these classes and the CLI renders its options from the same fields. The
module stays light (no torch, no trl) because the CLI imports it to build `--help`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from ..compute.device import DEVICE_HELP, check_device
from ..errors import UsageError

LOSSES = ("sigmoid", "ipo", "hinge", "rpo", "rpo-unpaired", "rpo-diagonal")
#: Losses TRL's DPOTrainer computes itself (hinge is SLiC).
TRL_LOSSES = ("sigmoid", "ipo", "hinge")
#: RPO variants that weight contrasts by prompt-embedding similarity.
EMBEDDING_LOSSES = ("rpo", "rpo-unpaired")

_SET_NAME = re.compile(r"^[a-z0-9_]+$")


#: trl.DPOConfig fields that are pairsift options of the same name. A `dpo:` entry (or ``--dpo``)
#: for one of them IS that option: it is merged into it; given both ways with different values
#: in one place (the recipe, or the command line) is an error.
SAME_NAME = (
    "beta", "learning_rate", "max_steps", "gradient_accumulation_steps", "max_length", "seed", "logging_steps",
    "save_steps", "report_to", "bf16", "gradient_checkpointing",
)
#: trl.DPOConfig fields pairsift derives from an option of its own (they also drive the stream,
#: the step count, the RPO trainer or the manifest): the DPOConfig name -> the pairsift option.
OWNED = {
    "output_dir": "output",
    "loss_type": "loss",
    "num_train_epochs": "epochs",
    "per_device_train_batch_size": "batch_size",
    "use_cpu": "device",
    "save_strategy": "save_steps",
    "activation_checkpointing": "gradient_checkpointing",
}
#: Old spellings a recipe might carry, refused with the one name that works.
RENAMED = {"lr": "learning_rate", "grad_accum": "gradient_accumulation_steps"}


def _opt(name: str) -> str:
    return "--" + name.replace("_", "-")


def dpo_fields() -> list[str]:
    """The field names of trl.DPOConfig (imports trl: call it only when a run is being set up)."""
    import dataclasses

    from trl import DPOConfig

    return [f.name for f in dataclasses.fields(DPOConfig)]


def _did_you_mean(key: str, names: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, names, n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def _lift(values: dict[str, Any], where: str) -> dict[str, Any]:
    """Move `dpo` entries that are pairsift options of the same name up to those options.

    `values` are the options given in one place (a recipe, or the command line); `dpo` in it is the
    DPOConfig mapping given there. The same option given both ways with two values is refused.
    """
    dpo = values.get("dpo")
    if not isinstance(dpo, dict):
        return values
    out = dict(values)
    rest = {}
    for key, value in dpo.items():
        name = str(key).replace("-", "_")
        if name in SAME_NAME:
            if name in out and out[name] is not None and out[name] != value:
                raise UsageError(
                    f"{where}: '{name}' given twice with different values ({out[name]!r} and dpo {name}={value!r}); "
                    "keep one"
                )
            out[name] = value
        else:
            rest[name] = value
    out["dpo"] = rest
    return out


@dataclass
class TrainConfig:
    """Everything `pairsift train` needs. A field's name is its recipe key and its CLI option
    (``learning_rate:`` and ``--learning-rate``)."""

    subset: str = field(default="", metadata={"help": "Name of the saved subset to train on."})
    model: str = field(default="", metadata={"help": "Policy to train: a local path or model id."})
    ref_model: str | None = field(
        default=None,
        metadata={"help": "Reference model; default: a fresh load of --model (with --use-peft: the base model, "
                          "adapters disabled)."},
    )
    loss: str = field(default="sigmoid", metadata={"help": "One of " + ", ".join(LOSSES) + "."})
    beta: float = field(default=0.1, metadata={"help": "KL strength (tau for IPO)."})
    tau: float = field(default=0.5, metadata={"help": "RPO softmax temperature over prompt similarity."})
    diagonal_weight: float = field(default=0.8, metadata={"help": "rpo-diagonal: weight of the own-pair term."})
    learning_rate: float = field(default=1e-6, metadata={"help": "Peak learning rate."})
    epochs: float | None = field(default=None, metadata={"help": "Passes over the subset (default 1)."})
    max_steps: int | None = field(default=None, metadata={"help": "Optimizer steps (instead of --epochs)."})
    batch_size: int = field(default=8, metadata={"help": "Pairs per device per micro-batch."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per optimizer step."})
    max_length: int = field(default=1024, metadata={"help": "Prompt+completion token limit (keep_start)."})
    output: str | None = field(default=None, metadata={"help": "Output directory (default runs/SUBSET-LOSS)."})
    seed: int = field(default=0, metadata={"help": "Seed of the per-epoch shuffle and of training."})
    prompt_embeddings: str = field(
        default="prompt_minilm", metadata={"help": "Stored prompt-embedding set used by RPO (embeddings_<set>)."}
    )
    device: str = field(default="auto", metadata={"help": DEVICE_HELP})
    bf16: bool | None = field(default=None, metadata={"help": "bf16 mixed precision (default: on for CUDA)."})
    logging_steps: int = field(
        default=10, metadata={"help": "Log metrics every N steps; the last step is always logged."}
    )
    report_to: str = field(
        default="none",
        metadata={"help": "Experiment trackers TRL reports to, comma-separated: none, tensorboard (event files "
                          "under OUTPUT/runs), wandb, mlflow, trackio, ..."},
    )
    save_steps: int | None = field(
        default=None, metadata={"help": "Save a checkpoint every N steps (for the eval training curve)."}
    )
    read_batch_size: int = field(default=8192, metadata={"help": "Pairs read from the store per Arrow chunk."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Trade compute for memory."})
    use_peft: bool = field(
        default=False,
        metadata={"help": "Train LoRA adapters instead of every weight (peft); the reference is the base model "
                          "with the adapters disabled, never a second copy."},
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank (with --use-peft)."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha: the update is scaled by alpha / r."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: str | None = field(
        default=None,
        metadata={"help": "Modules that get adapters, comma-separated (e.g. q_proj,v_proj, or all-linear); "
                          "default: peft's choice for the architecture."},
    )
    dpo: dict = field(
        default_factory=dict,
        metadata={"help": "Any other trl.DPOConfig field as KEY=VALUE (repeatable; VALUE read as YAML: 1e-5, "
                          "true, cosine); a recipe's `dpo:` mapping, overridden key by key."},
    )

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def fields(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> TrainConfig:
        """A config from a recipe mapping; `dpo` entries that are pairsift options are merged into them."""
        known = cls.fields()
        clean = {}
        for key, value in (data or {}).items():
            name = str(key).replace("-", "_")
            if name not in known:
                raise UsageError(f"{source}: unknown key '{key}'{_unknown_hint(name, known)}")
            clean[name] = value
        if "dpo" in clean and clean["dpo"] is None:
            clean["dpo"] = {}
        if "dpo" in clean and not isinstance(clean["dpo"], dict):
            raise UsageError(f"{source}: 'dpo' must be a mapping of trl.DPOConfig fields to values")
        if isinstance(clean.get("lora_target_modules"), (list, tuple)):
            clean["lora_target_modules"] = ",".join(map(str, clean["lora_target_modules"]))
        return cls(**_lift(clean, source))

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """Load a recipe, then apply `overrides` whose value is not None (CLI options)."""
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except OSError as e:
            raise UsageError(f"--config {path}: {e.strerror}") from e
        except yaml.YAMLError as e:
            raise UsageError(f"--config {path}: not valid YAML: {e}") from e
        if not isinstance(data, dict):
            raise UsageError(f"--config {path}: a recipe is a mapping of option names to values")
        config = cls.from_dict(data, source=str(path))
        return config.merged(**overrides)

    def merged(self, **overrides: Any) -> TrainConfig:
        """A copy with every override that is not None applied (the command line over a recipe).

        ``dpo`` overrides are merged key by key into the recipe's mapping.
        """
        known = set(self.fields())
        for key in overrides:
            if key not in known:
                raise UsageError(f"unknown option {_opt(key)}")
        values = _lift({k: v for k, v in overrides.items() if v is not None}, "command line")
        if values.get("max_steps") is not None and "epochs" not in values:
            values["epochs"] = None  # --max-steps on the command line replaces a recipe's epochs
        if values.get("epochs") is not None and "max_steps" not in values:
            values["max_steps"] = None
        if "dpo" in values:
            values["dpo"] = {**self.dpo, **values["dpo"]}
        return dataclasses.replace(self, **values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # ---- validation ---------------------------------------------------------------------------

    def validate(self) -> TrainConfig:
        """Check every value and combination; raise UsageError naming the option. Returns self."""

        def bad(name: str, why: str) -> NoReturn:
            raise UsageError(f"{_opt(name)}: {why}")

        if not self.subset:
            raise UsageError("the subset NAME is required (a subset saved by `pairsift select`)")
        if not self.model:
            bad("model", "required: the policy to train (a local path or model id)")
        if self.loss not in LOSSES:
            bad("loss", f"'{self.loss}' is not one of {', '.join(LOSSES)}")
        if not self.beta > 0:
            bad("beta", f"must be > 0, got {self.beta}")
        if not self.tau > 0:
            bad("tau", f"must be > 0, got {self.tau}")
        if not 0.0 <= self.diagonal_weight <= 1.0:
            bad("diagonal_weight", f"must be in [0, 1], got {self.diagonal_weight}")
        if not self.learning_rate > 0:
            bad("learning_rate", f"must be > 0, got {self.learning_rate}")
        if self.epochs is not None and self.max_steps is not None:
            raise UsageError("--epochs and --max-steps are exclusive: give one")
        if self.epochs is not None and not self.epochs > 0:
            bad("epochs", f"must be > 0, got {self.epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            bad("max_steps", f"must be >= 1, got {self.max_steps}")
        for name in ("batch_size", "gradient_accumulation_steps", "logging_steps", "read_batch_size", "lora_r"):
            if getattr(self, name) < 1:
                bad(name, f"must be >= 1, got {getattr(self, name)}")
        if self.save_steps is not None and self.save_steps < 1:
            bad("save_steps", f"must be >= 1, got {self.save_steps}")
        if self.max_length < 2:
            bad("max_length", f"must be >= 2, got {self.max_length}")
        if not self.lora_alpha > 0:
            bad("lora_alpha", f"must be > 0, got {self.lora_alpha}")
        if not 0.0 <= self.lora_dropout < 1.0:
            bad("lora_dropout", f"must be in [0, 1), got {self.lora_dropout}")
        if self.loss == "rpo-unpaired" and self.batch_size < 2:
            bad("batch_size", "rpo-unpaired needs >= 2 pairs per batch (chosen and rejected come from different pairs)")
        if self.loss in EMBEDDING_LOSSES and not _SET_NAME.match(self.prompt_embeddings or ""):
            bad("prompt_embeddings", f"'{self.prompt_embeddings}' is not a set name ([a-z0-9_]+)")
        try:
            self.device = check_device(self.device)
        except UsageError:
            bad("device", f"'{self.device}' is not {DEVICE_HELP}")
        if self.device == "cpu" and self.bf16:
            bad("bf16", "needs a GPU; drop --bf16 or use --device cuda")
        if not self.report_to_list:
            bad("report_to", "give at least one tracker, or none")
        self._validate_dpo()
        return self

    def _validate_dpo(self) -> None:
        if not isinstance(self.dpo, dict):
            raise UsageError("dpo: must be a mapping of trl.DPOConfig fields to values")
        for key in self.dpo:
            if key in SAME_NAME:
                raise UsageError(
                    f"dpo: '{key}' is pairsift's own {_opt(key)} (recipe key `{key}:`); set it there, not in dpo"
                )
            if key in OWNED:
                option = OWNED[key]
                raise UsageError(
                    f"dpo: '{key}' is set by pairsift from {_opt(option)} (recipe key `{option}:`); set that instead"
                )
        unknown = [k for k in self.dpo if k not in self._dpo_fields()]
        if unknown:
            names = self._dpo_fields()
            hints = "; ".join(f"'{k}'{_did_you_mean(k, names)}" for k in unknown)
            raise UsageError(f"dpo: trl.DPOConfig has no field {hints}")
        workers = self.dpo.get("dataloader_num_workers") or 0
        if workers and self.dpo.get("dataloader_multiprocessing_context") == "fork":
            raise UsageError(
                "dpo: dataloader_multiprocessing_context 'fork' is unsafe with Lance (not fork-safe): "
                "leave it unset (pairsift uses 'spawn') or use 'forkserver'"
            )

    @staticmethod
    def _dpo_fields() -> list[str]:
        return dpo_fields()

    @property
    def report_to_list(self) -> list[str]:
        value = self.report_to
        items = value if isinstance(value, (list, tuple)) else str(value).split(",")
        return [s.strip() for s in items if str(s).strip()]

    @property
    def target_modules(self) -> list[str] | str | None:
        """--lora-target-modules as peft takes it: None, "all-linear", or a list of names."""
        if not self.lora_target_modules:
            return None
        names = [s.strip() for s in str(self.lora_target_modules).split(",") if s.strip()]
        return names[0] if names == ["all-linear"] else names

    @property
    def output_dir(self) -> str:
        return self.output or str(Path("runs") / f"{self.subset}-{self.loss}")

    @property
    def uses_embeddings(self) -> bool:
        return self.loss in EMBEDDING_LOSSES


def _unknown_hint(name: str, known: list[str]) -> str:
    if name in RENAMED:
        return f": the recipe key is '{RENAMED[name]}' (the same as {_opt(RENAMED[name])})"
    try:
        dpo = dpo_fields()
    except ImportError:  # trl not installed: the hint is only about pairsift's own keys
        dpo = []
    if name in dpo:
        return f": it is a trl.DPOConfig field, so put it under `dpo:` (or --dpo {name}=VALUE)"
    return _did_you_mean(name, known) or f" (known: {', '.join(sorted(known))})"


@dataclass(frozen=True)
class EvalConfig:
    """Options of `pairsift eval` (field name = option name)."""

    beta: float = field(default=0.1, metadata={"help": "beta of the DPO loss and of the margin with beta."})
    batch_size: int = field(default=8, metadata={"help": "Pairs per forward batch."})
    max_length: int = field(default=1024, metadata={"help": "Prompt+completion token limit (keep_start), as training."})
    device: str = field(default="auto", metadata={"help": DEVICE_HELP})


@dataclass(frozen=True)
class StabilityConfig:
    """Options of `pairsift stability` (field name = option name)."""

    max_length: int = field(default=512, metadata={"help": "Max tokens per response (longer ones keep their start)."})
    device: str = field(default="auto", metadata={"help": DEVICE_HELP})
    dtype: str | None = field(
        default=None, metadata={"help": "Forward dtype (default: bfloat16 on GPU, float32 on CPU; pooling is fp32)."}
    )
    batch_tokens: int | None = field(
        default=None, metadata={"help": "Token budget per batch, rows x padded length (default: the engine's)."}
    )


EVAL_DEFAULTS = EvalConfig()
STABILITY_DEFAULTS = StabilityConfig()


def shipped_recipes() -> list[Path]:
    """The example recipes in the repository's recipes/ folder (empty when not a source checkout)."""
    root = Path(__file__).resolve().parents[2] / "recipes"
    return sorted(root.glob("*.yaml"))
