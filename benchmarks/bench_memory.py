"""Issue 12 memory claims: every job holds memory flat in the input size, side by side with the
code it replaced, on the real AlpacaEval responses and on synthetic 1M/6M-pair stores.

    python benchmarks/bench_memory.py embed                       # all-MiniLM-L6-v2, AlpacaEval
    python benchmarks/bench_memory.py score --model ../shared/models/stories260K --max-length 512
    python benchmarks/bench_memory.py pairs --store bench-out/synth-167k
    python benchmarks/bench_memory.py query --store bench-out/synth-1m
    python benchmarks/bench_memory.py export --store bench-out/synth-1m [--format-suffix .parquet|""]
    python benchmarks/bench_memory.py alpaca-pairs     # AlpacaEval + every pair, for query/export

Each run is its own child process; the parent samples the child's RSS (psutil, every 0.2 s) and
reads the progress the child prints, so "RSS at 25%" is the peak RSS seen until 25% of the input
rows were done (for `query`/`export`: 25% of the output bytes written). Peak RSS is the highest
sample. The samples and the child's progress lines are also streamed to ``<out>/<job>-<impl>.rss``
and ``.progress`` as they come, so a run that is killed or times out still leaves its trace. Every sub-command runs OUR code and a BASELINE in the same invocation:

- ``embed`` / ``score``: the baseline is a faithful copy of the pre-issue-12 job loop (kept below,
  since the product no longer has it): the whole window tokenised in one call, and a pa.Table per
  batch wrapping the batch's NumPy/torch outputs, handed to the same ChunkWriter. Same store,
  same model, same Engine. ``--baseline-fraction`` stops the baseline early (it takes as long as
  ours), which still shows its growth.
- ``query`` / ``export``: the baseline is a faithful copy of the pre-issue-12 implementation
  (whole result materialised, then written); the two outputs are compared byte for byte.
- ``pairs``: unchanged by issue 12; ours only (no baseline).

``embed`` also logs the ETA the CLI bar would show (remaining tokens / tokens per second since the
first report, as ``pairsift.cli.options`` computes it) and the rows-based ETA it used to show,
against the actual remaining time. Results go to ``--out`` as JSON, and a summary to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import load_average as load_avg  # noqa: E402

ALPACA = REPO.parent / "shared" / "data" / "alpaca-eval-multiresponse" / "dev.jsonl.gz"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


# ---- the parent: run a child, sample its RSS, read its progress -----------------------------------


def run_child(args: list[str], log_path: Path, out_file: Path | None = None, env: dict | None = None) -> dict:
    """Run `python bench_memory.py _child ...`; return RSS samples, progress lines and timings."""
    import psutil

    cmd = [sys.executable, str(Path(__file__).resolve()), "_child", *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(log_path, "w"), text=True, cwd=REPO,  # noqa: SIM115
                            env={**os.environ, **(env or {})})
    ps = psutil.Process(proc.pid)
    samples: list[tuple[float, int, int]] = []  # (t, rss, output bytes)
    stop = threading.Event()

    trace = open(Path(log_path).with_suffix(".rss"), "w")  # noqa: SIM115 - samples survive a killed parent

    def sample():
        while not stop.is_set():
            try:
                rss = ps.memory_info().rss
            except psutil.Error:
                break
            samples.append((time.perf_counter() - t0, rss, _size(out_file)))
            trace.write("%.1f %d %d\n" % samples[-1])
            trace.flush()
            stop.wait(0.2)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    lines = []
    progress_log = open(Path(log_path).with_suffix(".progress"), "w")  # noqa: SIM115
    for line in proc.stdout:
        progress_log.write(line)
        progress_log.flush()
        if line.startswith("{"):
            d = json.loads(line)
            d["t_parent"] = time.perf_counter() - t0
            lines.append(d)
    rc = proc.wait()
    stop.set()
    thread.join()
    trace.close()
    progress_log.close()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if rc != 0:
        raise SystemExit(f"child failed ({rc}): {' '.join(cmd)}\n{Path(log_path).read_text()[-3000:]}")
    return {
        "wall_s": time.perf_counter() - t0,
        "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "samples": samples,
        "lines": lines,
    }


def _size(out: Path | None) -> int:
    """Bytes written so far to `out`, or to the temporary sibling export writes before moving it."""
    if out is None:
        return 0
    paths = [out] if out.exists() else list(out.parent.glob(f".{out.name}.*.tmp"))
    total = 0
    for p in paths:
        try:
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
        except OSError:  # renamed or removed meanwhile
            pass
    return total


def rss_at(run: dict, fractions=(0.25, 0.5, 1.0), by_output: bool = False) -> dict[str, float]:
    """Peak sampled RSS (GB) until each fraction of the input rows (or output bytes) was done."""
    samples = run["samples"]
    if by_output:
        final = max((s[2] for s in samples), default=0) or 1
        frac = [(t, rss, size / final) for t, rss, size in samples]
    else:
        prog = [(d["t_parent"], d["rows"] / max(d["rows_total"], 1)) for d in run["lines"] if "rows" in d]
        frac, j, f = [], 0, 0.0
        for t, rss, _ in samples:
            while j < len(prog) and prog[j][0] <= t:
                f = prog[j][1]
                j += 1
            frac.append((t, rss, f))
    out = {}
    for x in fractions:
        seen = [rss for t, rss, f in frac if f <= x + 1e-9]
        reached = any(f >= x - 1e-9 for _, _, f in frac)
        out[f"{int(x * 100)}%"] = round(max(seen) / 1e9, 3) if seen and reached else None
    return out


# ---- the child: one job, progress on stdout --------------------------------------------------------


def emit(**d) -> None:
    print(json.dumps({"t": time.perf_counter(), **d}), flush=True)


class Emitter:
    """A progress callback printing at most every 0.5 s (and the first and last report)."""

    def __init__(self, rows_total: int | None = None):
        self.last = 0.0
        self.rows_total = rows_total

    def tokens(self, done: int, total: int, note: str = "") -> None:
        rows, rows_total = (int(x.replace(",", "")) for x in note.split()[0].split("/"))
        self._emit(rows=rows, rows_total=rows_total, tokens=done, tokens_total=total)

    def rows(self, done: int, total: int) -> None:
        self._emit(rows=done, rows_total=total)

    def _emit(self, **d) -> None:
        now = time.perf_counter()
        final = d["rows"] >= d["rows_total"]
        if now - self.last >= 0.5 or final or not self.last:
            self.last = now
            emit(**d)


def child(argv: list[str]) -> None:
    kind, *rest = argv
    opts = json.loads(rest[0])
    from pairsift.store import open_store

    if kind in ("embed", "score"):
        store = open_store(opts["store"])
        em = Emitter()
        stop_at = opts.get("fraction", 1.0)
        if opts["impl"] == "baseline":
            fn = old_embed if kind == "embed" else old_score_logprobs
            cb = em.rows
        else:
            from pairsift.compute.embed import embed
            from pairsift.compute.score import score_logprobs

            fn = embed if kind == "embed" else score_logprobs
            cb = em.tokens

        def progress(*a):
            cb(*a)
            if opts["impl"] == "baseline":
                rows, total = a[0], a[1]
            else:
                rows, total = (int(x.replace(",", "")) for x in a[2].split()[0].split("/"))
            if stop_at < 1.0 and rows >= stop_at * total:
                raise KeyboardInterrupt

        emit(event="start")
        try:
            if kind == "embed":
                rep = fn(store, MINILM, device="cpu", progress=progress)
            else:
                rep = fn(store, opts["model"], name="bench", device="cpu", max_length=opts["max_length"],
                         progress=progress)
            rep = rep if isinstance(rep, dict) else rep.to_dict()
            emit(event="end", written=rep["written"], tokens=rep["tokens"])
        except KeyboardInterrupt:
            emit(event="stopped")
    elif kind == "pairs":
        from pairsift.features.pairs import build_pairs

        store = open_store(opts["store"])
        em = Emitter()
        emit(event="start")
        rep = build_pairs(store, rebuild=True, embeddings=opts.get("embeddings"), logprobs=[], rewards=[],
                          progress=em.rows)
        emit(event="end", pairs=rep.pairs_added)
    elif kind == "query":
        if opts["impl"] == "baseline":
            store = open_store(opts["store"])
            rows = old_query_band(store, -1.0, 1.0).to_pylist()
            with open(opts["out"], "w") as f:
                f.write(json.dumps(rows, indent=2, sort_keys=True, default=str) + "\n")
        else:
            from click.testing import CliRunner  # noqa: F401 - not used: the real CLI in-process

            from pairsift.cli import cli

            with open(opts["out"], "w") as f:
                sys.stdout = f
                try:
                    cli.main(["query", "--store", opts["store"], "--band", "-1", "1", "--limit", "0", "--json"],
                             standalone_mode=False)
                finally:
                    sys.stdout = sys.__stdout__
        emit(event="end")
    elif kind == "export":
        store = open_store(opts["store"])
        if opts["impl"] == "baseline":
            old_export(store, opts["subset"], opts["out"])
        else:
            from pairsift.select.export import export

            export(store, opts["subset"], opts["out"])
        emit(event="end")
    else:
        raise SystemExit(f"unknown child {kind}")


# ---- baselines: the pre-issue-12 code, copied (the product no longer has it) ----------------------


def _old_tokenize(tok, texts, max_length, append_eos=False):
    """pairsift.compute.tokenize.tokenize before issue 12: ONE tokenizer call over the window."""
    import numpy as np

    from pairsift.compute.engine import Ragged

    limit = max_length - 1 if append_eos else max_length
    if not texts:
        return Ragged.from_lists([]), np.zeros(0, bool)
    enc = tok(texts, add_special_tokens=True, truncation=True, max_length=limit + 1,
              return_attention_mask=False, return_token_type_ids=False)["input_ids"]
    lengths = np.fromiter((len(x) for x in enc), dtype=np.int64, count=len(enc))
    truncated = lengths > limit
    if truncated.any():
        cut = np.flatnonzero(truncated)
        redo = tok([texts[i] for i in cut], add_special_tokens=True, truncation=True, max_length=limit,
                   return_attention_mask=False, return_token_type_ids=False)["input_ids"]
        for i, ids in zip(cut, redo):
            enc[i] = ids
    if append_eos:
        eos = tok.eos_token_id
        enc = [list(x) + [eos] for x in enc]
    return Ragged.from_lists(enc), truncated


def _old_rows(schema, ids, vecs, n_tokens, truncated, null=None):
    import pyarrow as pa

    from pairsift.compute import sets

    dim = schema.field("vector").type.list_size
    return pa.table({"id": ids.to_arrow().cast(pa.string()), "vector": sets.vectors(vecs, dim, null),
                     "n_tokens": pa.array(n_tokens, pa.int32()), "truncated": pa.array(truncated, pa.bool_())},
                    schema=schema)


def old_embed(store, model, device="cpu", progress=None, chunk_rows=4096, window_rows=65_536):
    """The pre-issue-12 `embed` job loop (responses, MiniLM's own max length and pooling)."""
    import numpy as np

    from pairsift.compute import sets
    from pairsift.compute.embed import pool_forward
    from pairsift.compute.engine import ChunkWriter, Engine, background
    from pairsift.compute.models import load
    from pairsift.store.schema import embeddings_schema

    loaded = load(model, "embed", device)
    net, tok = loaded.model, loaded.tokenizer
    max_length = loaded.native_max_length
    dim = int(net.config.hidden_size)
    schema = embeddings_schema(dim, {"model": model, "bench": "baseline"})
    table = store.create_table("embeddings_baseline", schema)
    todo = sets.Pending(store, "responses", ["response_id", "text"], "response_id", "embeddings_baseline", "id",
                        window_rows)
    total, done = todo.total, 0

    def windows():
        for w in todo:
            ids, texts = w.get_column("response_id"), w.get_column("text")
            blank = texts.str.strip_chars().str.len_chars().fill_null(0).eq(0).to_numpy()
            keep = np.flatnonzero(~blank)
            text_list = texts.to_list()
            seqs, truncated = _old_tokenize(tok, [text_list[i] for i in keep], max_length)
            yield ids, blank, keep, seqs, truncated

    engine = Engine(device, None, pad_id=tok.pad_token_id or 0)
    forward = pool_forward(net, loaded.st_pooling or "mean")
    with ChunkWriter(table.add, chunk_rows) as writer:
        for ids, blank, keep, seqs, truncated in background(windows(), depth=1):
            if blank.any():
                b = np.flatnonzero(blank)
                writer.add(_old_rows(schema, ids.gather(b), np.zeros((len(b), dim), np.float32),
                                     np.zeros(len(b), np.int32), np.zeros(len(b), bool), null=np.ones(len(b), bool)))
                done += len(b)
            lengths = seqs.lengths
            for idx, out in engine.run(forward, seqs):
                writer.add(_old_rows(schema, ids.gather(keep[idx]), out["vector"], lengths[idx].astype(np.int32),
                                     truncated[idx]))
                done += len(idx)
                if progress:
                    progress(done, total)
    return {"written": writer.committed, "tokens": engine.tokens}


def old_score_logprobs(store, model, name="bench", device="cpu", max_length=1024, progress=None, chunk_rows=4096,
                       window_rows=65_536):
    """The pre-issue-12 `score logprobs` job loop (plain text; whole-window TRL tokenisation)."""
    import numpy as np
    import pyarrow as pa

    from pairsift.compute import sets
    from pairsift.compute.engine import ChunkWriter, Engine, Ragged, background
    from pairsift.compute.models import load
    from pairsift.compute.score import (
        _completions,
        _prompts,
        _truncated,
        logprob_forward,
        logprob_targets,
    )
    from pairsift.compute.tokenize import trl_tokenize
    from pairsift.store.schema import logprobs_schema

    loaded = load(model, "causal_lm", device)
    net, tok = loaded.model, loaded.tokenizer
    schema = logprobs_schema({"model": model, "bench": "baseline"})
    table = store.create_table("logprobs_baseline", schema)
    todo = sets.Pending(store, "responses", ["response_id", "prompt_id", "text", "messages"], "response_id",
                        "logprobs_baseline", "response_id", window_rows)
    prompts_df = _prompts(store)
    total, done = todo.total, 0

    def windows():
        for w0 in todo:
            w = w0.join(prompts_df, on="prompt_id", how="inner")
            full, starts = trl_tokenize(tok, w.get_column("prompt_text").to_list(), w.get_column("text").to_list(),
                                        False)
            yield w.get_column("response_id"), Ragged.from_lists(full), starts

    def rows_table(ids, sums, n_tokens, token_ids, truncated):
        sums = np.asarray(sums, dtype=np.float64)
        n = np.asarray(n_tokens)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n > 0, sums / np.maximum(n, 1), np.nan)
        return pa.table({"response_id": ids.to_arrow().cast(pa.string()),
                         "logp_sum": pa.array(sums, pa.float64(), from_pandas=True),
                         "logp_mean": pa.array(mean, pa.float64(), from_pandas=True),
                         "n_tokens": pa.array(n, pa.int32()), "token_ids": token_ids,
                         "truncated": pa.array(truncated, pa.bool_())}, schema=schema)

    engine = Engine(device, None, pad_id=tok.pad_token_id or 0)
    forward = logprob_forward(net)
    with ChunkWriter(table.add, chunk_rows) as writer:
        for ids, seqs_all, starts in background(windows(), depth=1):
            full_len = seqs_all.lengths
            comp = _completions(seqs_all, starts)
            kept_len = np.minimum(full_len, max_length)
            dropped = starts >= max_length
            scored = np.clip(kept_len - np.maximum(starts, 1), 0, None)
            truncated = full_len > max_length
            if dropped.any():
                d = np.flatnonzero(dropped)
                writer.add(rows_table(ids.gather(d), np.full(len(d), np.nan), np.zeros(len(d), np.int64),
                                      comp.take(d), truncated[d]))
                done += len(d)
            keep = np.flatnonzero(~dropped)
            seqs = _truncated(seqs_all, keep, max_length)
            for idx, out in engine.run(forward, seqs, {"start": starts[keep]}, logprob_targets):
                rows = keep[idx]
                writer.add(rows_table(ids.gather(rows), out["logp_sum"], scored[rows], comp.take(rows),
                                      truncated[rows]))
                done += len(idx)
                if progress:
                    progress(done, total)
    return {"written": writer.committed, "tokens": engine.tokens}


def old_query_band(store, lo, hi, embedding=None, limit=None):
    """pairsift.features.query.query_band before issue 12: the whole band, sorted, texts joined."""
    import polars as pl
    import pyarrow as pa
    import pyarrow.compute as pc

    from pairsift.features.query import PAIR_COLUMNS, cosine_column, pair_features
    from pairsift.store.schema import features_meta
    from pairsift.store.sql import is_in

    def texts(table, key, ids, name):
        t = store.dataset(table).to_table(columns=[key, "text"], filter=is_in(key, ids.to_pylist())) if len(ids) \
            else None
        frame = pl.from_arrow(t) if t is not None else pl.DataFrame(schema={key: pl.String, "text": pl.String})
        return frame.unique(key, keep="first").rename({"text": name})

    ds = pair_features(store)
    col = cosine_column(ds.schema, embedding)
    mode = features_meta(ds.schema).get("mode")
    band = f"{col} >= {float(lo)!r} AND {col} <= {float(hi)!r}"
    tbl = ds.scanner(columns=PAIR_COLUMNS + [col], filter=band, late_materialization=True).to_table()
    tbl = tbl.sort_by([(col, "ascending"), ("pair_id", "ascending")])
    if limit is not None:
        tbl = tbl.slice(0, limit)
    tbl = tbl.replace_schema_metadata({b"pairsift.query": f"band {lo} {hi} on {col} ({mode} pairs)".encode()})
    rids = pc.unique(pa.concat_arrays([tbl.column("a_id").combine_chunks(), tbl.column("b_id").combine_chunks()]))
    pids = pc.unique(tbl.column("prompt_id").combine_chunks())
    rtext = texts("responses", "response_id", rids, "text")
    out = (
        pl.from_arrow(tbl)
        .join(texts("prompts", "prompt_id", pids, "prompt"), on="prompt_id", how="left", maintain_order="left")
        .join(rtext.rename({"response_id": "a_id", "text": "text_a"}), on="a_id", how="left", maintain_order="left")
        .join(rtext.rename({"response_id": "b_id", "text": "text_b"}), on="b_id", how="left", maintain_order="left")
    )
    return out.to_arrow().replace_schema_metadata(tbl.schema.metadata)


def old_export(store, name, out):
    """pairsift.select.export.export before issue 12: the whole subset joined in memory, then written."""
    import polars as pl

    from pairsift.select.export import guess_format
    from pairsift.select.subsets import load_subset

    _NOT_FEATURES = {"pair_id", "prompt_id", "a_id", "b_id", "label", "label_source", "orientable"}

    def _scan(store, table, versions):
        return store.scan(table, version=versions[table])

    def _as_messages(msgs, text, role):
        one = pl.concat_list(pl.struct(role=pl.lit(role), content=pl.col(text)))
        return pl.when(pl.col(msgs).is_null()).then(one).otherwise(pl.col(msgs))

    manifest, members = load_subset(store, name)
    versions = manifest["store_versions"] if isinstance(manifest, dict) else manifest.store_versions
    labelled_flag = manifest["labelled"] if isinstance(manifest, dict) else manifest.labelled
    m = pl.from_arrow(members).drop([c for c in ("subset", "run") if c in members.column_names])
    feats = _scan(store, "pair_features", versions)
    keep = [c for c in feats.collect_schema().names() if c not in _NOT_FEATURES]
    feats = feats.select("pair_id", *keep).join(m.lazy().select("pair_id"), on="pair_id", how="semi")
    resp = _scan(store, "responses", versions).select("response_id", "text", "messages")
    resp = resp.join(pl.concat([m.lazy().select(response_id="a_id"), m.lazy().select(response_id="b_id")]).unique(),
                     on="response_id", how="semi")
    prompts = _scan(store, "prompts", versions).select("prompt_id", p_text="text", p_msgs="messages")
    prompts = prompts.join(m.lazy().select("prompt_id").unique(), on="prompt_id", how="semi")
    resp_df = resp.collect()
    df = (
        m.join(prompts.collect(), on="prompt_id", how="left")
        .join(resp_df.rename({"response_id": "a_id", "text": "a_text", "messages": "a_msgs"}), on="a_id", how="left")
        .join(resp_df.rename({"response_id": "b_id", "text": "b_text", "messages": "b_msgs"}), on="b_id", how="left")
        .join(feats.collect(), on="pair_id", how="left")
        .sort("rank")
    )
    labelled = bool(labelled_flag) and df["chosen_id"].is_not_null().all()
    conversational = df["p_msgs"].is_not_null().any()
    if conversational:
        prompt = _as_messages("p_msgs", "p_text", "user")
        a, b = _as_messages("a_msgs", "a_text", "assistant"), _as_messages("b_msgs", "b_text", "assistant")
    else:
        prompt, a, b = pl.col("p_text"), pl.col("a_text"), pl.col("b_text")
    a_chosen = pl.col("chosen_id") == pl.col("a_id")
    if labelled:
        texts = [prompt.alias("prompt"), pl.when(a_chosen).then(a).otherwise(b).alias("chosen"),
                 pl.when(a_chosen).then(b).otherwise(a).alias("rejected")]
    else:
        texts = [prompt.alias("prompt"), a.alias("response_a"), b.alias("response_b")]
    ids = ["prompt_id", "pair_id", "a_id", "b_id", "chosen_id", "rejected_id", "label_source", "rank", "score"]
    feature_cols = [c for c in df.columns if c not in set(ids) | {"p_text", "p_msgs", "a_text", "a_msgs", "b_text",
                                                                   "b_msgs"}]
    # Issue 15 (after issue 12) orients a labelled export's features chosen-minus-rejected; the
    # baseline does the same over its whole frame, so the two outputs stay comparable byte for byte.
    from pairsift.select.orient import oriented

    feats = oriented(feature_cols, pl.when(a_chosen).then(1).otherwise(-1)) if labelled else feature_cols
    df = df.select(*texts, *ids, *feats)
    fmt = guess_format(out)
    out = Path(out)
    if fmt == "hf":
        import datasets

        datasets.Dataset(df.to_arrow()).save_to_disk(str(out))
    elif fmt == "jsonl":
        df.write_ndjson(out)
    else:
        df.write_parquet(out)


# ---- sub-commands --------------------------------------------------------------------------------


def alpaca_store(work: Path, prompts: int | None = None, data: Path = ALPACA) -> Path:
    """The AlpacaEval responses ingested once (the README's command), copied per run.

    `prompts`: only the first N prompts (smoke runs)."""
    src = work / (f"alpaca-src-{prompts}" if prompts else "alpaca-src")
    if not (src / "responses.lance").exists():
        shutil.rmtree(src, ignore_errors=True)
        if prompts:
            import gzip

            source, data = data, work / f"alpaca-{prompts}.jsonl.gz"
            with gzip.open(source, "rt") as f, gzip.open(data, "wt") as g:
                for _, line in zip(range(prompts), f):
                    g.write(line)
        subprocess.run([sys.executable, "-m", "pairsift.cli", "ingest", str(data), "--preset", "alpaca",
                        "--dataset", "alpaca-eval", "--split", "dev", "--store", str(src)], check=True, cwd=REPO)
    return src


def fresh_copy(src: Path, dst: Path) -> Path:
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    return dst


def eta_series(run: dict) -> dict:
    """The ETA the bar shows (tokens) and the one it used to show (rows) vs the actual remaining time."""
    lines = [d for d in run["lines"] if "tokens" in d and "rows" in d]
    start = next(d["t"] for d in run["lines"] if d.get("event") == "start")
    end = next(d["t"] for d in run["lines"] if d.get("event") == "end")
    first = lines[0]
    points = []
    for d in lines[1:]:
        elapsed = d["t"] - first["t"]
        frac = d["tokens"] / max(d["tokens_total"], 1)
        rate = (d["tokens"] - first["tokens"]) / elapsed if elapsed > 0 else 0
        eta = (d["tokens_total"] - d["tokens"]) / rate if rate > 0 else None
        rate_rows = d["rows"] / (d["t"] - start) if d["rows"] else 0
        eta_rows = (d["rows_total"] - d["rows"]) / rate_rows if rate_rows else None
        actual = end - d["t"]
        points.append({"t": round(d["t"] - start, 1), "token_frac": round(frac, 4),
                       "row_frac": round(d["rows"] / max(d["rows_total"], 1), 4),
                       "eta_tokens_s": None if eta is None else round(eta, 1),
                       "eta_rows_s": None if eta_rows is None else round(eta_rows, 1),
                       "actual_s": round(actual, 1)})
    after = [p for p in points if p["token_frac"] >= 0.05 and p["actual_s"] > 0 and p["eta_tokens_s"] is not None]
    def err(p, key):
        return p[key] / p["actual_s"] - 1

    checkpoints = {}
    for x in (0.05, 0.10, 0.25, 0.50, 0.75, 0.90):
        p = next((p for p in after if p["token_frac"] >= x), None)
        if p:
            checkpoints[f"{int(x * 100)}%"] = {"eta_tokens_s": p["eta_tokens_s"], "eta_rows_s": p["eta_rows_s"],
                                               "actual_s": p["actual_s"],
                                               "err_tokens": round(err(p, "eta_tokens_s"), 3),
                                               "err_rows": round(err(p, "eta_rows_s"), 3) if p["eta_rows_s"] else None}
    within = [p for p in after if p["token_frac"] <= 0.95]
    worst = max(within, key=lambda p: abs(err(p, "eta_tokens_s")), default=None)
    return {"checkpoints": checkpoints,
            "max_abs_err_tokens_5_95": round(abs(err(worst, "eta_tokens_s")), 3) if worst else None,
            "worst_point": worst, "points": points}


def compute_bench(args, kind: str) -> dict:
    work = Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    src = alpaca_store(work, args.prompts, Path(args.data))
    res = {"command": " ".join(sys.argv), "load_before": load_avg()}
    opts = {"model": args.model, "max_length": args.max_length}
    for impl in ("ours", "baseline"):
        if impl == "baseline" and args.baseline_fraction <= 0:
            continue
        store = fresh_copy(src, work / f"{kind}-{impl}")
        frac = args.baseline_fraction if impl == "baseline" else 1.0
        print(f"[{kind}] {impl} ... (load {load_avg()})", file=sys.stderr, flush=True)
        run = run_child([kind, json.dumps({**opts, "impl": impl, "store": str(store), "fraction": frac})],
                        work / f"{kind}-{impl}.log")
        run["rss_gb"] = rss_at(run, (0.25, 0.5, 1.0))
        run["peak_rss_gb"] = round(max(s[1] for s in run["samples"]) / 1e9, 3)
        run["load_after"] = load_avg()
        if impl == "ours" and kind == "embed":
            run["eta"] = eta_series(run)
        res[impl] = run
        shutil.rmtree(store, ignore_errors=True)
        print(json.dumps({impl: {k: run[k] for k in ("wall_s", "cpu_s", "rss_gb", "peak_rss_gb")}}), flush=True)
    return res


def output_bench(args, kind: str) -> dict:
    work = Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    res = {"command": " ".join(sys.argv), "load_before": load_avg()}
    suffix = {"query": ".json", "export": args.format_suffix}[kind]
    digests = {}
    for impl in ("ours", "baseline"):
        if impl == "baseline" and args.no_baseline:
            continue
        out = work / f"{kind}-{impl}{suffix}"
        shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink(missing_ok=True)
        print(f"[{kind}] {impl} ... (load {load_avg()})", file=sys.stderr, flush=True)
        run = run_child([kind, json.dumps({"impl": impl, "store": args.store, "out": str(out),
                                           "subset": args.subset})], work / f"{kind}-{impl}.log", out_file=out)
        run["rss_gb"] = rss_at(run, (0.25, 0.5, 1.0), by_output=True)
        run["peak_rss_gb"] = round(max(s[1] for s in run["samples"]) / 1e9, 3)
        run["output_bytes"] = max((s[2] for s in run["samples"]), default=0)
        run["load_after"] = load_avg()
        digests[impl] = _digest(out)
        res[impl] = run
        print(json.dumps({impl: {k: run[k] for k in ("wall_s", "cpu_s", "rss_gb", "peak_rss_gb", "output_bytes")}}),
              flush=True)
    if len(digests) == 2:
        res["same_output"] = digests["ours"] == digests["baseline"]
        print(f"same output bytes: {res['same_output']}", flush=True)
    return res


def _digest(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if f.name == "state.json":  # holds the dataset's fingerprint: random per save
            continue
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def alpaca_pairs(args) -> None:
    """The AlpacaEval store with every candidate pair and a subset of all orientable pairs, for
    `query`/`export` with real texts. The embedding set is seeded random unit vectors (the
    vectors' values do not matter to what `query` and `export` hold in memory)."""
    import numpy as np
    import pyarrow as pa

    from pairsift.features.pairs import build_pairs
    from pairsift.select.subsets import select, subset_exists
    from pairsift.store import open_store
    from pairsift.store.schema import embeddings_schema

    out = Path(args.store)
    if not (out / "responses.lance").exists():
        fresh_copy(alpaca_store(Path(args.out), None, Path(args.data)), out)
    store = open_store(out)
    if not store.has_table("embeddings_rand"):
        ids = store.dataset("responses").to_table(columns=["response_id"]).column(0)
        vecs = np.random.default_rng(0).standard_normal((len(ids), 64)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        schema = embeddings_schema(64, {"model": "random-unit-vectors", "seed": 0})
        table = pa.table({"id": ids, "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), 64),
                          "n_tokens": np.zeros(len(ids), np.int32), "truncated": np.zeros(len(ids), bool)},
                         schema=schema)
        with store.writer() as w:
            w.append("embeddings_rand", table, schema)
    if not store.has_table("pair_features"):
        print(build_pairs(store, embeddings=["rand"], logprobs=[], rewards=[]).summary())
    if not subset_exists(store, "all"):
        print(select(store, "top", "all", by="cos_rand", ratio=1.0).summary())


def pairs_bench(args) -> dict:
    res = {"command": " ".join(sys.argv), "load_before": load_avg()}
    work = Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    run = run_child(["pairs", json.dumps({"store": args.store, "embeddings": args.embeddings})],
                    work / "pairs.log")
    run["rss_gb"] = rss_at(run, (0.25, 0.5, 1.0))
    run["peak_rss_gb"] = round(max(s[1] for s in run["samples"]) / 1e9, 3)
    run["load_after"] = load_avg()
    res["ours"] = run
    print(json.dumps({"ours": {k: run[k] for k in ("wall_s", "cpu_s", "rss_gb", "peak_rss_gb")}}), flush=True)
    return res


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        child(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("embed", "score"):
        p = sub.add_parser(name)
        p.add_argument("--model", default=MINILM if name == "embed" else str(REPO.parent / "shared" / "models" / "stories260K"))
        p.add_argument("--max-length", type=int, default=512)
        p.add_argument("--baseline-fraction", type=float, default=1.0,
                       help="stop the baseline after this fraction of the rows (0: no baseline)")
        p.add_argument("--prompts", type=int, default=None, help="only the first N AlpacaEval prompts (smoke runs)")
        p.add_argument("--data", default=str(ALPACA), help="the AlpacaEval multi-response file")
    for name in ("query", "export"):
        p = sub.add_parser(name)
        p.add_argument("--store", required=True)
        p.add_argument("--no-baseline", action="store_true")
        p.add_argument("--subset", default="all")
        p.add_argument("--format-suffix", default=".jsonl", help="export: .jsonl, .parquet or '' (HF folder)")
    p = sub.add_parser("pairs")
    p.add_argument("--store", required=True)
    p.add_argument("--embeddings", nargs="*", default=None)
    p = sub.add_parser("alpaca-pairs", help="build the AlpacaEval pairs store for query/export (real texts)")
    p.add_argument("--store", default=str(REPO / "bench-out" / "memory" / "alpaca-pairs"))
    p.add_argument("--data", default=str(ALPACA))
    for p in sub.choices.values():
        p.add_argument("--out", default=str(REPO / "bench-out" / "memory"))
    args = ap.parse_args()
    if args.cmd == "alpaca-pairs":
        alpaca_pairs(args)
        return
    if args.cmd in ("embed", "score"):
        res = compute_bench(args, args.cmd)
    elif args.cmd == "pairs":
        res = pairs_bench(args)
    else:
        res = output_bench(args, args.cmd)
    res["load_after"] = load_avg()
    path = Path(args.out) / f"{args.cmd}{'-' + args.format_suffix.strip('.') if args.cmd == 'export' else ''}.json"
    for impl in ("ours", "baseline"):
        if impl in res:
            res[impl]["samples"] = res[impl]["samples"][:: max(1, len(res[impl]["samples"]) // 2000)]
    path.write_text(json.dumps(res, indent=1))
    summary = {k: ({kk: v[kk] for kk in ("wall_s", "cpu_s", "rss_gb", "peak_rss_gb") if kk in v}
                   if isinstance(v, dict) and "samples" in v else v)
               for k, v in res.items() if k not in ("command",)}
    if "ours" in res and "eta" in res["ours"]:
        summary["eta"] = {k: res["ours"]["eta"][k] for k in ("checkpoints", "max_abs_err_tokens_5_95")}
    print(json.dumps(summary, indent=1))
    print(f"written {path}")


if __name__ == "__main__":
    main()
