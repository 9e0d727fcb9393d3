"""Deterministic tiny models for fast tests, rehearsals and offline examples.

A 2-layer GPT-2 (causal LM, or with a one-output reward head) and a 2-layer BERT encoder (the
"fake embedder": real transformer code, 32-dimensional, random weights fixed by the seed), each
saved with a byte-level BPE tokenizer trained on a fixed word list. No hub, no downloads: the
same seed gives the same files on every machine, and every command that takes ``--model PATH``
accepts them (`pairsift embed --model DIR`, `score logprobs`, `score reward`). They carry no
meaning: use them to exercise the machinery, never to measure a method.

Build once per process and reuse (``tiny_gpt2_dir`` and friends return an existing folder
as is).
"""

from __future__ import annotations

import copy
import functools
import random
from pathlib import Path

WORDS = (
    "the cat sat on a mat while dogs bark at night and people ask why models answer "
    "questions about safety help harm kindness weather cooking code python data"
).split()

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|endoftext|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def sentences(n: int, seed: int = 0, max_words: int = 40) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, max_words))) for _ in range(n)]


def tiny_tokenizer():
    """A fresh copy of the tiny byte-level BPE tokenizer (trained once per process)."""
    return copy.deepcopy(_trained_tokenizer())


@functools.lru_cache(maxsize=1)
def _trained_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(sentences(200, seed=1) + ["Human: Assistant: ?!.,"], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|pad|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_gpt2_dir(root: Path, seed: int = 0) -> Path:
    """A 2-layer GPT-2 causal LM with random weights, saved with its tokenizer; returns the directory."""
    return _tiny_gpt2(Path(root) / f"tiny-gpt2-{seed}", seed, "GPT2LMHeadModel")


def tiny_reward_dir(root: Path, seed: int = 0) -> Path:
    """The same GPT-2 with a one-output sequence-classification (reward) head."""
    return _tiny_gpt2(Path(root) / f"tiny-rm-{seed}", seed, "GPT2ForSequenceClassification", num_labels=1)


def _tiny_gpt2(path: Path, seed: int, model_class: str, **config) -> Path:
    import torch
    import transformers

    if (path / "config.json").exists():
        return path
    tok = tiny_tokenizer()
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(
        vocab_size=len(tok), n_positions=128, n_embd=32, n_layer=2, n_head=2,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=tok.eos_token_id, **config,
    )
    getattr(transformers, model_class)(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def tiny_bert_dir(root: Path, seed: int = 0) -> Path:
    """A 2-layer BERT encoder with the tiny BPE tokenizer wrapped to add [CLS]/[SEP]-like tokens."""
    import torch
    from tokenizers import processors
    from transformers import BertConfig, BertModel

    path = Path(root) / f"tiny-bert-{seed}"
    if (path / "config.json").exists():
        return path
    tok = tiny_tokenizer()
    eos, pad = tok.eos_token_id, tok.pad_token_id
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<|pad|> $A <|endoftext|>", special_tokens=[("<|pad|>", pad), ("<|endoftext|>", eos)]
    )
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, pad_token_id=pad)
    BertModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path
