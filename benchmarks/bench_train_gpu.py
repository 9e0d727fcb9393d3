"""Issue 5, GPU claim: DPO steps/s streaming from the store >= 0.97 x the same subset in memory.

    python benchmarks/bench_train_gpu.py --device cuda                # H200: 1B-class Llama from config
    python benchmarks/bench_train_gpu.py --smoke                      # tiny CPU run: proves the script works

Same model (built from a config, random weights, no download), same batch, same steps, same
subset, same shuffled order; only the dataset differs:

* ours      — ``subset_stream(store, subset)``: a datasets.IterableDataset read from Lance at the
              subset's recorded versions (the stream TRL gets from `pairsift train`);
* baseline  — the subset materialised first as an in-memory ``datasets.Dataset`` (export, then
              load), handed to the same DPOTrainer.

Each run does --warmup steps (not timed: tokenizer/CUDA warm-up) and then --steps timed steps,
measured by a TrainerCallback between step ends. Prints steps/s of each and the ratio.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_stream import build  # noqa: E402

from pairsift.store import open_store  # noqa: E402


def make_tokenizer(vocab: int):
    """A byte-level BPE tokenizer trained on the benchmark words (no hub)."""
    from bench_stream import WORDS
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|endoftext|>", "<|pad|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([" ".join(WORDS)] * 50 + ["0123456789: "] * 50, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|pad|>")


def make_model(tok, size: str):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    shapes = {
        # ~1.2B parameters with a 32k vocab (Llama-3.2-1B-like widths; vocab is the tokenizer's here).
        "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                   num_key_value_heads=8),
        "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2),
    }[size]
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), max_position_embeddings=4096, bos_token_id=tok.eos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=True,
                      **shapes)
    return LlamaForCausalLM(cfg)


def run(store, dataset, model, tok, args) -> float:
    """Steps/s over the timed steps of one DPO run."""
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    class Clock(TrainerCallback):
        def __init__(self):
            self.marks = []

        def on_step_end(self, a, state, control, **kw):
            if args.device == "cuda":
                import torch

                torch.cuda.synchronize()
            self.marks.append(time.perf_counter())

    clock = Clock()
    cfg = DPOConfig(
        output_dir=tempfile.mkdtemp(prefix="bench-train-"), max_steps=args.warmup + args.steps,
        per_device_train_batch_size=args.batch_size, learning_rate=1e-6, beta=0.1, max_length=args.max_length,
        report_to="none", save_strategy="no", logging_steps=10_000, use_cpu=args.device == "cpu",
        bf16=args.device == "cuda", activation_checkpointing=False, dataloader_num_workers=0, disable_tqdm=True,
        seed=0,
        # The baseline reads the pre-shuffled in-memory copy in order, so both runs see the same batches.
        train_sampling_strategy="sequential",
    )
    policy = copy.deepcopy(model)
    ref = copy.deepcopy(model)
    trainer = DPOTrainer(model=policy, ref_model=ref, args=cfg, train_dataset=dataset, processing_class=tok,
                         callbacks=[clock])
    trainer.train()
    timed = clock.marks[args.warmup - 1:] if args.warmup else [clock.marks[0]] + clock.marks
    del trainer, policy, ref
    if args.device == "cuda":
        import torch

        torch.cuda.empty_cache()
    return (len(timed) - 1) / (timed[-1] - timed[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--smoke", action="store_true", help="tiny model, few pairs and steps, on CPU")
    ap.add_argument("--model-size", choices=["1b", "tiny"], default="1b")
    ap.add_argument("--pairs", type=int, default=20_000)
    ap.add_argument("--chars", type=int, default=600, help="~characters per prompt and response")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=2, help="alternate ours/baseline this many times; best of each")
    ap.add_argument("--out", default=None, help="store directory (default: a temp dir)")
    args = ap.parse_args()
    if args.smoke:
        args.device, args.model_size = "cpu", "tiny"
        args.pairs, args.chars, args.batch_size, args.max_length = 64, 120, 4, 128
        args.warmup, args.steps, args.repeats = 1, 4, 1

    import datasets
    import pyarrow as pa

    from pairsift.train.stream import epoch_order, subset_stream, subset_table

    store = open_store(args.out or tempfile.mkdtemp(prefix="bench-train-store-"))
    if not store.has_table("subsets"):
        build(store, args.pairs, args.chars)
    tok = make_tokenizer(32_000 if args.model_size == "1b" else 400)
    model = make_model(tok, args.model_size)
    n_params = sum(p.numel() for p in model.parameters())

    # The baseline gets the same pairs in the same order the stream's first epoch reads them.
    table = subset_table(store, "bench").select(["pair_id", "prompt_id", "prompt", "chosen", "rejected"])
    in_memory = datasets.Dataset(table.take(pa.array(epoch_order(table.num_rows, 0, 0))))

    best = {"stream (ours)": 0.0, "in-memory Dataset (baseline)": 0.0}
    for _ in range(args.repeats):
        best["stream (ours)"] = max(best["stream (ours)"], run(store, subset_stream(store, "bench", seed=0),
                                                               model, tok, args))
        best["in-memory Dataset (baseline)"] = max(best["in-memory Dataset (baseline)"],
                                                   run(store, in_memory, model, tok, args))
    ours, base = best["stream (ours)"], best["in-memory Dataset (baseline)"]
    print(f"device {args.device}, model {args.model_size} ({n_params / 1e6:.1f}M params), batch {args.batch_size}, "
          f"max_length {args.max_length}, {args.steps} timed steps after {args.warmup}, best of {args.repeats}")
    for name, rate in best.items():
        print(f"  {name:<32} {rate:8.3f} steps/s")
    print(f"  ratio stream / in-memory: {ours / base:.3f} (claim >= 0.97{'' if args.device == 'cuda' else '; CPU smoke: not the claim'})")


if __name__ == "__main__":
    main()
