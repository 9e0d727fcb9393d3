"""REAL (METHODS.md §1): choose pairs by the cosine of their two responses' embeddings.

Per prompt (every prompt with at least one candidate pair gets exactly one pick):
``easy`` (smallest cosine), ``hard`` (largest), ``random`` (seeded uniform), ``centroid``
(2-means over the prompt's response embeddings, one response nearest each centre).
For single-pair data (HH-RLHF), over all pairs at once: ``easy-half`` / ``hard-half`` (the
first / last floor(N/2) by cosine; for odd N the middle pair is in neither and is counted as
``middle_of_odd``), ``random-half`` (a seeded sample of floor(N/2)).

Scores recorded per pick: the cosine (easy, hard, halves), the uniform draw (random,
random-half), and for centroid the sum of the two picks' distances to their centres.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from ...errors import UsageError
from .base import Context, Picks, Pool, Strategy, order_by, rank_picks, top_per_prompt, top_rows, uniform_draws

DEFAULT_EMBEDDING = None  # None: the only cos_<set> column of pair_features (see resolve_embedding)


class _Cosine(Strategy):
    defaults = {"embedding": DEFAULT_EMBEDDING}

    def columns(self, p):
        return [f"cos_{p['embedding']}"]


class Easy(_Cosine):
    name = "easy"
    summary = "per prompt, the pair with the smallest cosine (REAL easy)"
    descending = False

    def pick(self, pool, p, rng, ctx):
        col = f"cos_{p['embedding']}"
        rows = top_per_prompt(pool.df, [(col, self.descending)])
        score = pool.df[col].to_numpy()[rows].astype(np.float64)
        ranked = rank_picks(pool.df, rows, [(score, self.descending)])
        return Picks(ranked, pool.df[col].to_numpy()[ranked].astype(np.float64))


class Hard(Easy):
    name = "hard"
    summary = "per prompt, the pair with the largest cosine (REAL hard)"
    descending = True


class Random(Strategy):
    name = "random"
    summary = "per prompt, a seeded uniformly random pair (REAL random)"
    defaults = {}
    uses_seed = True

    def pick(self, pool, p, rng, ctx):
        u = uniform_draws(pool.df, rng)
        rows = top_per_prompt(pool.df, [(u, True)])
        ranked = rank_picks(pool.df, rows, [(u[rows], True)])
        return Picks(ranked, u[ranked])


class _Half(_Cosine):
    """Global split of single-pair data by cosine."""

    def pick(self, pool, p, rng, ctx):
        col = f"cos_{p['embedding']}"
        n = pool.df.height
        half = n // 2
        order = order_by(pool.df, [(col, False)])  # ascending cosine, ties by pair key
        cos = pool.df[col].to_numpy().astype(np.float64)
        extra = {"middle_of_odd": int(n % 2)}
        if self.name == "easy-half":
            rows = order[:half]
        else:
            rows = order[n - half :][::-1]  # rank 0 = the most similar pair
        if n % 2:
            pool.excluded["middle_of_odd"] += 1
        return Picks(rows, cos[rows], extra)


class EasyHalf(_Half):
    name = "easy-half"
    summary = "single-pair data: the floor(N/2) pairs with the smallest cosine"


class HardHalf(_Half):
    name = "hard-half"
    summary = "single-pair data: the floor(N/2) pairs with the largest cosine"


class RandomHalf(Strategy):
    name = "random-half"
    summary = "single-pair data: a seeded random floor(N/2) of the pairs"
    defaults = {}
    uses_seed = True

    def pick(self, pool, p, rng, ctx):
        u = uniform_draws(pool.df, rng)
        rows = top_rows(pool.df, u, True, pool.df.height // 2)
        return Picks(rows, u[rows])


# ---- centroid ------------------------------------------------------------------------------------

N_ITER = 20  # Lloyd iterations; 2-means on <= ~100 points converges in a handful


def two_means(gram: np.ndarray, init: np.ndarray, n_iter: int = N_ITER) -> tuple[np.ndarray, np.ndarray]:
    """Batched 2-means on Gram matrices [P, K, K] (dot products of the points).

    `init[p]` is the index of the point that seeds centre 0; centre 1 starts at the point farthest
    from it (first such on ties). Points join the nearer centre (centre 0 on ties); an empty
    cluster keeps its centre. Works on Gram matrices only, so it is exact for any dimension.
    Returns (assignment [P, K] in {0, 1}, squared distance of each point to each centre [P, K, 2]).
    """
    P, K, _ = gram.shape
    diag = np.einsum("pkk->pk", gram)
    ar = np.arange(P)
    # Centres as weight vectors over the points: c = W @ X, so |x - c|^2 = g_xx - 2 (G W)_x + W G W.
    w = np.zeros((P, 2, K))
    w[ar, 0, init] = 1.0
    d0 = diag + diag[ar, init][:, None] - 2 * gram[ar, init]
    w[ar, 1, np.argmax(d0, axis=1)] = 1.0

    def sqdist(w):
        gw = np.einsum("pkj,pcj->pkc", gram, w)  # [P, K, 2]
        cgc = np.einsum("pcj,pcj->pc", w, np.einsum("pjl,pcl->pcj", gram, w))  # [P, 2]
        return np.maximum(diag[:, :, None] - 2 * gw + cgc[:, None, :], 0.0)

    assign = np.zeros((P, K), dtype=np.int8)
    for _ in range(n_iter):
        d = sqdist(w)
        new = (d[:, :, 1] < d[:, :, 0]).astype(np.int8)
        onehot = np.stack([new == 0, new == 1], axis=1).astype(np.float64)  # [P, 2, K]
        size = onehot.sum(axis=2, keepdims=True)
        w = np.where(size > 0, onehot / np.maximum(size, 1), w)
        if np.array_equal(new, assign) and _ > 0:
            break
        assign = new
    return assign, sqdist(w)


class Centroid(_Cosine):
    name = "centroid"
    summary = "per prompt, 2-means over the response embeddings; the response nearest each centre"
    uses_seed = True
    block_responses = 65_536  # vectors held at once (~400 MB as float64 at 768-d)

    def tables(self, p):
        return [f"embeddings_{p['embedding']}"]

    def columns(self, p):
        return super().columns(p) + ["a_id", "b_id"]  # which responses each pair joins

    def required(self, p):
        return super().columns(p)

    def pick(self, pool: Pool, p: dict[str, Any], rng: np.random.Generator, ctx: Context) -> Picks:
        df = pool.df
        # The prompt's responses: those in at least one of its candidate pairs, by (prompt, id).
        resp = (
            pl.concat([df.select("_g", rid="a_id"), df.select("_g", rid="b_id")])
            .unique()
            .sort("_g", "rid")
        )
        k_all = resp.group_by("_g", maintain_order=True).len()["len"].to_numpy().astype(np.int64)
        # One draw per prompt, in prompt-key order: the index of the point that seeds centre 0.
        u = rng.random(len(k_all))
        init_all = np.minimum((u * k_all).astype(np.int64), k_all - 1)
        vec_rows = _embedding_rows(ctx, p["embedding"], resp["rid"])
        offsets = np.concatenate([[0], np.cumsum(k_all)]).astype(np.int64)

        d_own = np.empty(resp.height)  # distance to the centre of the response's own cluster
        cluster = np.empty(resp.height, dtype=np.int8)
        ds = ctx.store.dataset(f"embeddings_{p['embedding']}", ctx.versions[f"embeddings_{p['embedding']}"])
        for k in np.unique(k_all).tolist():
            prompts = np.flatnonzero(k_all == k)
            step = max(1, self.block_responses // k)
            for s in range(0, len(prompts), step):
                blk = prompts[s : s + step]
                idx = (offsets[blk][:, None] + np.arange(k, dtype=np.int64)[None, :]).ravel()
                x = _take_vectors(ds, vec_rows[idx]).reshape(len(blk), k, -1)
                x = x.astype(np.float64)  # exact Gram: near-ties must not depend on float32 rounding
                gram = np.matmul(x, x.transpose(0, 2, 1))
                assign, d2 = two_means(gram, init_all[blk])
                cluster[idx] = assign.ravel()
                d_own[idx] = np.sqrt(np.take_along_axis(d2, assign[:, :, None].astype(np.int64), 2)).ravel()

        # Score each candidate pair: straddling the two clusters first, then the smaller sum of
        # distances to the own centres. The best straddling pair is exactly "the response nearest
        # each centre"; if that pair is not a candidate (or a cluster is empty) the next best is
        # taken, so the two picks always differ.
        look = resp.with_columns(cl=pl.Series(cluster), d=pl.Series(d_own))
        j = (
            df.select("_g", "a_id", "b_id")
            .with_row_index("_r")
            .join(look.rename({"rid": "a_id", "cl": "cl_a", "d": "d_a"}), on=["_g", "a_id"], how="left")
            .join(look.rename({"rid": "b_id", "cl": "cl_b", "d": "d_b"}), on=["_g", "b_id"], how="left")
            .sort("_r")
        )
        straddle = (j["cl_a"] != j["cl_b"]).to_numpy()
        # Rounded so that mathematical ties (the two points of a 2-point cluster are equidistant
        # from its centre) are ties, broken by pair key, not by float noise.
        cost = np.round((j["d_a"] + j["d_b"]).to_numpy(), 9)
        rows = top_per_prompt(df, [(straddle, True), (cost, False)])
        ranked = rank_picks(df, rows, [(cost[rows], False)])
        return Picks(ranked, cost[ranked], {"fallback_same_cluster": int((~straddle[rows]).sum())})


def _embedding_rows(ctx: Context, name: str, ids: pl.Series) -> np.ndarray:
    """Row positions in embeddings_<name> of `ids` (every id must have a vector)."""
    table = f"embeddings_{name}"
    ds = ctx.store.dataset(table, ctx.versions[table])
    stored = pl.from_arrow(ds.to_table(columns=["id"])).with_row_index("_pos")
    found = pl.DataFrame({"id": ids}).with_row_index("_i").join(stored, on="id", how="left").sort("_i")
    missing = found["_pos"].is_null()
    if missing.any():
        raise UsageError(
            f"{int(missing.sum())} responses with a cosine in pair_features have no vector in '{table}' "
            f"(e.g. {found.filter(missing)['id'][0]}): re-run `pairsift embed --name {name}`"
        )
    return found["_pos"].to_numpy().astype(np.int64)


def _take_vectors(ds, rows: np.ndarray) -> np.ndarray:
    order = np.argsort(rows, kind="stable")
    tbl = ds.take(rows[order], columns=["vector"])
    col = tbl.column("vector").combine_chunks()
    if col.null_count:
        raise UsageError(f"null vectors among the responses of candidate pairs in {ds.uri}")
    dim = col.type.list_size
    flat = col.values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, dim)
    out = np.empty_like(flat)
    out[order] = flat
    return out
