"""Build stores with prompts, responses, prompt embeddings and saved subsets directly (no select)."""

from __future__ import annotations

import atexit
import copy
import functools
import json
import shutil
import tempfile
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa

from pairsift.store import PROMPTS, RESPONSES
from pairsift.store.ids import pair_id, prompt_id, response_id
from pairsift.store.schema import SUBSET_MEMBERS, SUBSETS, embeddings_schema

WORDS = "the cat sat on a mat and dog ran far away from home sun is hot today good bad yes no".split()


def _text(rng, n_words: int) -> str:
    return " ".join(rng.choice(WORDS, size=n_words))


def build_corpus(store, n_prompts: int = 12, k: int = 2, seed: int = 0, chat: bool = False, emb_dim: int = 8):
    """`n_prompts` prompts with `k` responses each; returns a dict of python-side truth.

    Response `j` of a prompt gets score -j, so response 0 is the best. With `chat`, prompts carry
    messages (every other prompt, to exercise the plain-text fallback) and responses messages too.
    """
    rng = np.random.default_rng(seed)
    prompts, responses = [], []
    for i in range(n_prompts):
        text = f"prompt {i}: " + _text(rng, 3)
        messages = [{"role": "user", "content": text}] if chat and i % 2 == 0 else None
        pid = prompt_id(text, messages)
        prompts.append({"prompt_id": pid, "text": text, "messages": messages, "dataset": "t", "split": "train", "meta": None})
        for j in range(k):
            rtext = f"answer {i}.{j} " + _text(rng, 2 + j)
            rmsg = [{"role": "assistant", "content": rtext}] if chat and j == 0 else None
            rid = response_id(pid, rtext, rmsg)
            responses.append(
                {
                    "response_id": rid,
                    "prompt_id": pid,
                    "text": rtext,
                    "messages": rmsg,
                    "source": "s",
                    "score": float(-j),
                    "blank": False,
                    "meta": None,
                }
            )
    vecs = rng.normal(size=(n_prompts, emb_dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    emb = pa.table(
        {
            "id": [p["prompt_id"] for p in prompts],
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), emb_dim),
            "n_tokens": pa.array([3] * n_prompts, pa.int32()),
            "truncated": [False] * n_prompts,
        }
    )
    with store.writer() as w:
        w.append("responses", pa.Table.from_pylist(responses, RESPONSES), RESPONSES)
        w.append("prompts", pa.Table.from_pylist(prompts, PROMPTS), PROMPTS)
        w.append("embeddings_prompt_minilm", emb, embeddings_schema(emb_dim, {"model": "fake"}))
    return {"prompts": prompts, "responses": responses, "prompt_vecs": vecs}


def save_subset(store, name: str, corpus: dict, prompt_idx=None, labelled: bool = True, flip=(), seed: int = 0):
    """Save a subset of one pair per prompt (responses 0 and 1). Response 0 is chosen, except for
    prompts in `flip` where response 1 is. Returns the expected rows [(pair_id, prompt, chosen, rejected)]."""
    by_prompt: dict[str, list] = {}
    for r in corpus["responses"]:
        by_prompt.setdefault(r["prompt_id"], []).append(r)
    prompts = corpus["prompts"]
    idx = range(len(prompts)) if prompt_idx is None else prompt_idx
    members, expected = [], []
    for rank, i in enumerate(idx):
        p = prompts[i]
        r0, r1 = by_prompt[p["prompt_id"]][:2]
        chosen, rejected = (r1, r0) if i in flip else (r0, r1)
        a, b = sorted([r0["response_id"], r1["response_id"]])
        pid = pair_id(a, b)
        members.append(
            {
                "subset": name,
                "pair_id": pid,
                "prompt_id": p["prompt_id"],
                "rank": rank,
                "score": float(rank),
                "chosen_id": chosen["response_id"] if labelled else None,
                "rejected_id": rejected["response_id"] if labelled else None,
                "a_id": a,
                "b_id": b,
            }
        )
        expected.append((pid, p, chosen, rejected))
    versions = store.versions(["prompts", "responses"])
    manifest = {
        "name": name,
        "strategy": "test",
        "params": json.dumps({"seed": seed}),
        "seed": seed,
        "store_versions": json.dumps(versions),
        "tag": f"subset-{name}",
        "counts": json.dumps({"selected": len(members)}),
        "labelled": labelled,
        "created_at": datetime.now(timezone.utc),
    }
    with store.writer() as w:
        w.append("subset_members", pa.Table.from_pylist(members, SUBSET_MEMBERS), SUBSET_MEMBERS)
        w.append("subsets", pa.Table.from_pylist([manifest], SUBSETS), SUBSETS)
    return expected


# ---- tiny models (NOTES §4.5): no downloads, no hub ---------------------------------------------

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|endoftext|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def tiny_tokenizer():
    """A fresh copy of the tiny byte-level BPE tokenizer (trained once per test run)."""
    return copy.deepcopy(_tiny_tokenizer())


@functools.lru_cache(maxsize=1)
def _tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = [" ".join(WORDS), "prompt answer user assistant 0 1 2 3 4 5 6 7 8 9 . :"] * 20
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|pad|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_model(tok, seed: int = 0):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=len(tok), n_positions=256, n_embd=32, n_layer=2, n_head=2,
        bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    return GPT2LMHeadModel(cfg)


def save_tiny(path, seed: int = 0):
    """A tiny model + tokenizer saved to `path` (so CLI and path-based loading can be tested);
    built once per test run and seed, then copied."""
    shutil.copytree(_saved_tiny(seed), path, dirs_exist_ok=True)
    return str(path)


@functools.lru_cache(maxsize=4)
def _saved_tiny(seed: int) -> str:
    path = tempfile.mkdtemp(prefix=f"pairsift-tiny-{seed}-")
    atexit.register(shutil.rmtree, path, True)
    tok = tiny_tokenizer()
    tiny_model(tok, seed).save_pretrained(path)
    tok.save_pretrained(path)
    return path
