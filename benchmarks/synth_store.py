"""Build the synthetic benchmark store of issue 4: N prompts x K responses, d-dim embeddings.

    python benchmarks/synth_store.py --out bench-out/synth-1m --prompts 1000000

Tables (written through ``Store.writer()``: streamed fragments, one commit per table, memory
bounded by one chunk): ``prompts``, ``responses`` (source, integer score 1..10, so equal-score
ties occur), ``pairs`` (one labelled pair per prompt for a fraction of prompts),
``embeddings_<set>`` (L2-normalised float32; a per-prompt shared direction plus per-response
noise, so cosines spread over roughly [0, 0.95] instead of clustering at 0),
``rewards_<rm>`` and ``logprobs_<lp>`` (short token-id lists, for DCRM/M_AP strategies).
Deterministic for a given --seed. 1M prompts x 4 responses x 768-d is ~12 GB on disk.
"""

from __future__ import annotations

import argparse

from common import build_synth_store

# The builder lives in benchmarks/common.py (shared with bench_select and bench_scale); this file
# keeps the command line that BENCHMARKS.md quotes.
build = build_synth_store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench-out/synth")
    ap.add_argument("--prompts", type=int, default=1_000_000)
    ap.add_argument("--responses", type=int, default=4, help="responses per prompt (K)")
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--tokens", type=int, default=32, help="max token ids per response in logprobs_synth")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--labelled", type=float, default=0.5, help="fraction of prompts with a labelled pair")
    ap.add_argument("--no-extras", action="store_true", help="skip rewards_synth and logprobs_synth")
    args = ap.parse_args()
    print(build_synth_store(args.out, args.prompts, args.responses, args.dim, args.tokens, seed=args.seed,
                labelled=args.labelled, extras=not args.no_extras))


if __name__ == "__main__":
    main()
