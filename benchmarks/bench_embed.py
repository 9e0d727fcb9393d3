"""GPU claim (issue 3): embedding and log-prob scoring throughput and MFU with a 1.3B
Phi-1.5-shaped model (random weights from config: same FLOPs as the real one), on two
response-length profiles, with the baselines run side by side in the same process:

- ours: pairsift's engine (tokenised once, sorted by length, token-budget batches, bf16, SDPA,
  inference mode, no mask on unpadded batches, background collate + pinned async copies;
  log-probs through the LM head only at scored positions);
- reference recipe (REAL's code): fp16, every sequence padded/truncated to 512, batch 8, data order;
- naive Hugging Face: fp32, pad to the longest in the batch, batch 32, random order
  (log-probs: full [B, T, V] logits + log_softmax).

Profiles (token lengths, lognormal, clipped): HH-like median ~32, tail to 512;
UltraFeedback-like median ~300, tail to 2048. Log-prob mode prepends a prompt (median ~64 HH,
~160 UF) and scores the response tokens.

Reported: real (non-padding) tokens/s and MFU = FLOPs/s / 790e12 (H200 dense bf16 peak) with
FLOPs = 2 x non-embedding params per real token (+ 2 x vocab x d per scored token through the
LM head in log-prob mode) — i.e. tokens/s x 2 x params / 790e12 as in the issue.

    python benchmarks/bench_embed.py --device cuda                 # the measurement (H200)
    python benchmarks/bench_embed.py --device cuda --mode logprobs
    python benchmarks/bench_embed.py --smoke                       # tiny model on CPU: proves it runs
"""

from __future__ import annotations

import argparse
import time

import numpy as np

PEAK = 790e12

PROFILES = {
    # name: (median, sigma, max, prompt median for log-prob mode)
    "hh": (32, 1.0, 512, 64),
    "uf": (300, 0.6, 2048, 160),
}


def lengths(profile: str, n: int, seed: int = 0) -> np.ndarray:
    median, sigma, cap, _ = PROFILES[profile]
    rng = np.random.default_rng(seed)
    return np.clip(np.round(rng.lognormal(np.log(median), sigma, n)), 1, cap).astype(np.int64)


def prompt_lengths(profile: str, n: int, seed: int = 1) -> np.ndarray:
    median = PROFILES[profile][3]
    rng = np.random.default_rng(seed)
    return np.clip(np.round(rng.lognormal(np.log(median), 0.7, n)), 1, 1024).astype(np.int64)


def build_model(smoke: bool, device: str, dtype, causal: bool):
    import torch
    from transformers import PhiConfig, PhiForCausalLM

    if smoke:
        cfg = PhiConfig(vocab_size=512, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                        num_attention_heads=4, max_position_embeddings=2048)
    else:  # microsoft/phi-1_5
        cfg = PhiConfig(vocab_size=51200, hidden_size=2048, intermediate_size=8192, num_hidden_layers=24,
                        num_attention_heads=32, max_position_embeddings=2048, partial_rotary_factor=0.5)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device(device):
        net = PhiForCausalLM(cfg).to(dtype).eval()
    return net if causal else net.model


def non_embedding_params(net) -> int:
    emb = net.get_input_embeddings().weight.numel()
    total = sum(p.numel() for p in net.parameters())
    head = net.get_output_embeddings()
    if head is not None and head.weight is not net.get_input_embeddings().weight:
        total -= head.weight.numel()  # counted per scored token instead
    return total - emb


def sync(device):
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


# ---- the three ways to run -------------------------------------------------------------------


def run_ours(net, seqs, device, batch_tokens, mode, starts=None):
    from pairsift.compute.embed import pool_forward
    from pairsift.compute.engine import Engine
    from pairsift.compute.score import logprob_forward, logprob_targets

    engine = Engine(device, batch_tokens, pad_id=0)
    forward = pool_forward(net, "mean") if mode == "embed" else logprob_forward(net)
    extras = None if mode == "embed" else {"start": starts}
    n = 0
    prepare = None if mode == "embed" else logprob_targets
    for idx, out in engine.run(forward, seqs, extras, prepare):
        n += len(idx)
    sync(device)
    return engine.tokens


def run_fixed(net, seqs, device, batch, mode, starts, pad_to=None, order=None, max_rows=None):
    """Baselines: fixed row batches, padded to `pad_to` (truncating) or to the batch's longest."""
    import torch

    lens = seqs.lengths
    order = np.arange(len(seqs)) if order is None else order
    if max_rows:
        order = order[:max_rows]
    real = 0
    with torch.no_grad():
        for s in range(0, len(order), batch):
            idx = order[s : s + batch]
            width = pad_to or int(lens[idx].max())
            ids = np.zeros((len(idx), width), np.int64)
            mask = np.zeros((len(idx), width), np.int64)
            for j, i in enumerate(idx):
                row = seqs.row(i)[:width]
                ids[j, : len(row)] = row
                mask[j, : len(row)] = 1
            ids_t = torch.from_numpy(ids).to(device)
            mask_t = torch.from_numpy(mask).to(device)
            if mode == "embed":
                h = net(input_ids=ids_t, attention_mask=mask_t).last_hidden_state
                m = mask_t.unsqueeze(-1).to(h.dtype)
                v = (h * m).sum(1) / m.sum(1)
                torch.nn.functional.normalize(v.float(), dim=-1).cpu()
            else:
                logits = net(input_ids=ids_t, attention_mask=mask_t).logits.float()
                lp = logits[:, :-1].log_softmax(-1).gather(2, ids_t[:, 1:, None]).squeeze(2)
                pos = torch.arange(1, width, device=device)
                st = torch.from_numpy(starts[idx]).to(device).clamp(min=1)
                keep = (pos[None] >= st[:, None]) & (mask_t[:, 1:] > 0)
                (lp * keep).sum(1).cpu()
            real += int(mask.sum())
    sync(device)
    return real


def measure(fn, device):
    sync(device)
    t0 = time.perf_counter()
    tokens = fn()
    sync(device)
    return tokens, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--mode", choices=["embed", "logprobs", "both"], default="both")
    ap.add_argument("--profiles", default="hh,uf")
    ap.add_argument("--n", type=int, default=30_000, help="sequences per profile for ours")
    ap.add_argument("--baseline-rows", type=int, default=3_000, help="rows the (slow) baselines run on")
    ap.add_argument("--batch-tokens", type=int, default=65_536)
    ap.add_argument("--smoke", action="store_true", help="tiny model on CPU, few rows: checks the script runs")
    args = ap.parse_args()

    import torch

    from pairsift.compute.engine import Ragged

    if args.smoke:
        args.device, args.n, args.baseline_rows, args.batch_tokens = "cpu", 96, 48, 4096
    device = args.device
    modes = ["embed", "logprobs"] if args.mode == "both" else [args.mode]
    low = torch.bfloat16 if device.startswith("cuda") else torch.float32
    ref_dtype = torch.float16 if device.startswith("cuda") else torch.float32
    print(f"device {device}{' (' + torch.cuda.get_device_name() + ')' if device.startswith('cuda') else ''}, "
          f"{'SMOKE (tiny model, CPU): figures mean nothing' if args.smoke else 'Phi-1.5-shaped 1.4B, random weights'}")
    for mode in modes:
        causal = mode == "logprobs"
        nets = {"ours": build_model(args.smoke, device, low, causal)}
        params = non_embedding_params(nets["ours"] if causal else build_model(args.smoke, "cpu", torch.float32, True))
        vocab_d = nets["ours"].config.vocab_size * nets["ours"].config.hidden_size
        print(f"\n== {mode}: non-embedding params {params / 1e9:.3f}B ==")
        for profile in args.profiles.split(","):
            rng = np.random.default_rng(2)
            resp = lengths(profile, args.n)
            if mode == "embed":
                total_len, starts = resp, np.zeros(args.n, np.int64)
            else:
                pl = prompt_lengths(profile, args.n)
                total_len, starts = pl + resp, pl
            seqs = Ragged.from_lists([rng.integers(3, nets["ours"].config.vocab_size, n).tolist() for n in total_len])
            scored = np.clip(total_len - np.maximum(starts, 1), 0, None)

            def flops(tokens, rows=None):
                sc = scored.sum() if rows is None else scored[rows].sum()
                return 2 * params * tokens + (2 * vocab_d * sc if mode == "logprobs" else 0)

            # warm-up (kernels, allocator)
            warm = Ragged.from_lists([seqs.row(i).tolist() for i in range(min(64, args.n))])
            run_ours(nets["ours"], warm, device, args.batch_tokens, mode, starts[:64])
            tok, dt = measure(lambda: run_ours(nets["ours"], seqs, device, args.batch_tokens, mode, starts), device)
            results = [(f"ours (sorted, token budget, {str(low)[6:]})", tok, dt, flops(tok))]
            del nets["ours"]
            if device.startswith("cuda"):
                torch.cuda.empty_cache()

            base_rows = min(args.baseline_rows, args.n)
            ref_net = build_model(args.smoke, device, ref_dtype, causal)
            order = np.arange(args.n)
            tok, dt = measure(lambda: run_fixed(ref_net, seqs, device, 8, mode, starts, pad_to=512,
                                                max_rows=base_rows), device)
            results.append(("reference (fp16, pad 512, batch 8)", tok, dt, flops(tok, order[:base_rows])))
            ref_net = None  # free the weights before the next model loads
            naive_net = build_model(args.smoke, device, torch.float32, causal)
            perm = np.random.default_rng(3).permutation(args.n)
            tok, dt = measure(lambda: run_fixed(naive_net, seqs, device, 32, mode, starts, order=perm,
                                                max_rows=base_rows), device)
            results.append(("naive HF (fp32, pad longest, batch 32)", tok, dt, flops(tok, perm[:base_rows])))
            naive_net = None
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
            nets["ours"] = build_model(args.smoke, device, low, causal)

            ours_rate = results[0][1] / results[0][2]
            print(f"-- profile {profile}: {args.n} seqs, median {int(np.median(total_len))} tokens, "
                  f"max {int(total_len.max())} (baselines: first {base_rows} rows)")
            for name, tok, dt, fl in results:
                rate = tok / dt
                print(f"   {name:<40} {rate:>12,.0f} real tok/s   MFU {fl / dt / PEAK:6.1%}   "
                      f"ours is {ours_rate / rate:5.2f}x")
        nets = None


if __name__ == "__main__":
    main()
