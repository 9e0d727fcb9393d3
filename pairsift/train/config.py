"""Typed configs of `train`, `eval` and `stability`, with validation, and YAML recipes.

A recipe is a YAML mapping of :class:`TrainConfig` field names (``-`` or ``_``); command-line
options override it. Bad values and combinations fail before any model is loaded, naming the
option to fix. Unknown keys are errors, not silently ignored.

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


def _opt(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass
class TrainConfig:
    """Everything `pairsift train` needs. Field names are the CLI option names (``--max-steps``)."""

    subset: str = field(default="", metadata={"help": "Name of the saved subset to train on."})
    model: str = field(default="", metadata={"help": "Policy to train: a local path or model id."})
    ref_model: str | None = field(
        default=None, metadata={"help": "Reference model; default: a fresh load of --model."}
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
    logging_steps: int = field(default=10, metadata={"help": "Log metrics every N steps."})
    save_steps: int | None = field(
        default=None, metadata={"help": "Save a checkpoint every N steps (for the eval training curve)."}
    )
    read_batch_size: int = field(default=8192, metadata={"help": "Pairs read from the store per Arrow chunk."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Trade compute for memory."})
    dpo: dict = field(
        default_factory=dict, metadata={"help": "Extra trl.DPOConfig fields, passed through (recipes only)."}
    )

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def fields(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> TrainConfig:
        known = set(cls.fields())
        clean = {}
        for key, value in (data or {}).items():
            name = str(key).replace("-", "_")
            if name not in known:
                raise UsageError(f"{source}: unknown key '{key}' (known: {', '.join(sorted(known))})")
            clean[name] = value
        return cls(**clean)

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
        """A copy with every override that is not None applied."""
        known = set(self.fields())
        for key in overrides:
            if key not in known:
                raise UsageError(f"unknown option {_opt(key)}")
        values = {k: v for k, v in overrides.items() if v is not None}
        if values.get("max_steps") is not None and "epochs" not in values:
            values["epochs"] = None  # --max-steps on the command line replaces a recipe's epochs
        if values.get("epochs") is not None and "max_steps" not in values:
            values["max_steps"] = None
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
        for name in ("batch_size", "gradient_accumulation_steps", "logging_steps", "read_batch_size"):
            if getattr(self, name) < 1:
                bad(name, f"must be >= 1, got {getattr(self, name)}")
        if self.save_steps is not None and self.save_steps < 1:
            bad("save_steps", f"must be >= 1, got {self.save_steps}")
        if self.max_length < 2:
            bad("max_length", f"must be >= 2, got {self.max_length}")
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
        if not isinstance(self.dpo, dict):
            bad("dpo", "must be a mapping of trl.DPOConfig fields")
        owned = {"beta", "loss_type", "learning_rate", "max_steps", "num_train_epochs", "output_dir", "seed",
                 "per_device_train_batch_size", "gradient_accumulation_steps", "max_length", "bf16", "use_cpu"}
        clash = owned & set(self.dpo)
        if clash:
            raise UsageError(
                f"dpo: {', '.join(sorted(clash))} are pairsift options; set them as top-level keys / CLI flags"
            )
        return self

    @property
    def output_dir(self) -> str:
        return self.output or str(Path("runs") / f"{self.subset}-{self.loss}")

    @property
    def uses_embeddings(self) -> bool:
        return self.loss in EMBEDDING_LOSSES


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
