"""One meaning of ``--device`` for every command: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

``auto`` is a CUDA device when one is visible, else the CPU. :func:`check_device` validates the
spelling without importing torch (configs and the CLI call it); :func:`resolve_device` turns it
into the concrete device a job runs on, failing with the fix when CUDA is asked for and absent.
"""

from __future__ import annotations

import re

from ..errors import UsageError

DEVICE_HELP = "auto, cpu, cuda or cuda:N (auto: cuda when one is visible, else cpu)."
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_device(device: str | None, option: str = "--device") -> str:
    """The device spelling, normalised (``None`` -> ``auto``); a bad one names the option."""
    device = "auto" if device is None else str(device).strip().lower()
    if not _DEVICE.match(device):
        raise UsageError(f"{option} {device}: expected {DEVICE_HELP}")
    return device


def resolve_device(device: str | None, option: str = "--device") -> str:
    """The concrete device (``cpu``, ``cuda`` or ``cuda:N``) for a ``--device`` value."""
    import torch

    device = check_device(device, option)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"{option} {device}: no CUDA device is visible here; use {option} cpu")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise UsageError(f"{option} {device}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return device


def default_dtype(device: str) -> str:
    """bf16 weights on a GPU; fp32 on CPU (bf16 matmuls are slow on most CPUs)."""
    return "bfloat16" if str(device).startswith("cuda") else "float32"
