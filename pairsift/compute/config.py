"""Defaults and help of the options every model-backed job shares (embed, score logprobs/reward).

Written once here: the library functions take their defaults from :data:`DEFAULTS` and the CLI
renders its options from the same fields. Light on purpose (no numpy, no torch): the CLI imports
it to build `--help`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .device import DEVICE_HELP

#: DPOConfig.max_length in TRL 1.16: the longest prompt+response training will see.
TRL_MAX_LENGTH = 1024
#: Embedding limit when the model names none of its own (sentence-transformers' max_seq_length).
EMBED_MAX_LENGTH = 2048
#: Reward-model limit when the model's context is longer.
REWARD_MAX_LENGTH = 4096


@dataclass(frozen=True)
class ComputeConfig:
    """Options of `pairsift embed` and `pairsift score` (field name = option name)."""

    device: str = field(default="auto", metadata={"help": DEVICE_HELP})
    dtype: str | None = field(
        default=None,
        metadata={"help": "Weights dtype: bfloat16, float16 or float32 (default: bfloat16 on GPU, float32 on CPU)."},
    )
    batch_tokens: int | None = field(
        default=None, metadata={"help": "Token budget per batch, rows x padded length (default: the engine's)."}
    )
    chunk_rows: int = field(
        default=4096, metadata={"help": "Rows per committed chunk: what a killed run can lose and redo."}
    )
    window_rows: int = field(
        default=65_536, metadata={"help": "Input rows read and tokenised at a time (bounds host memory)."}
    )


DEFAULTS = ComputeConfig()
