"""REAL (docs/METHODS.md §1): choose pairs by the cosine of their two responses' embeddings.

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

from ...errors import UsageError
from ...store.ids import id_keys
from .base import (
    Context,
    Picks,
    Pool,
    Strategy,
    order_by,
    rank_picks,
    top_per_prompt,
    top_rows,
    uniform_draws,
)

DEFAULT_EMBEDDING = None  # None: the only cos_<set> column of pair_features (see resolve_embedding)


class _Cosine(Strategy):
    defaults = {"embedding": DEFAULT_EMBEDDING}

    def columns(self, p):
        return [f"cos_{p['embedding']}"]


class Easy(_Cosine):
    name = "easy"
    summary = "per prompt, the pair with the smallest cosine (REAL easy)"
    descending = False
    half_variant = "easy-half"  # suggested when every prompt has one pair (select's hint)

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
    half_variant = "hard-half"


class Random(Strategy):
    name = "random"
    summary = "per prompt, a seeded uniformly random pair (REAL random)"
    defaults = {}
    uses_seed = True
    half_variant = "random-half"

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
    """With ``--embedding X`` the draw is among the pairs with a cosine under X: the pool easy-half
    and hard-half split, so the three halves (given the same X) are comparable; without it, among
    every candidate pair."""

    name = "random-half"
    summary = "single-pair data: a seeded random floor(N/2) of the pairs"
    defaults = {"embedding": None}
    uses_seed = True

    def configure(self, params):
        p = super().configure(params)
        if p.get("embedding") is None:
            del p["embedding"]  # optional here: never resolved to a default set, not recorded
        return p

    def columns(self, p):
        return [f"cos_{p['embedding']}"] if p.get("embedding") else []

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
    """2-means per prompt. The Gram matrix of a prompt's responses comes from the stored cosines
    (``cos_<set>`` of every pair of the prompt, all read at the same version: exact for
    normalised vectors, and no vector I/O); prompts whose pairs are not all in pair_features
    (``--labelled-only`` builds, ``--where`` filters, null cosines) read their vectors from
    ``embeddings_<set>`` instead. Either way the clustering is the same batched kernel 2-means."""

    name = "centroid"
    summary = "per prompt, 2-means over the response embeddings; the response nearest each centre"
    uses_seed = True
    half_variant = "easy-half, hard-half or random-half"
    block_responses = 65_536  # vectors held at once on the fallback path (~400 MB as float64 at 768-d)

    def tables(self, p):
        return [f"embeddings_{p['embedding']}"]

    def pick(self, pool: Pool, p: dict[str, Any], rng: np.random.Generator, ctx: Context) -> Picks:
        df, col, read = pool.df, f"cos_{p['embedding']}", pool.read
        n_read = read.height
        # Every response of the rows read gets a dense number (one sort, no per-key lookups);
        # response ids hash their prompt, so a response key is unique store-wide.
        keys, inv = np.unique(np.concatenate([pool.keys["a_id"], pool.keys["b_id"]]),
                              return_inverse=True)
        inv_a, inv_b = inv[:n_read], inv[n_read:]  # indexed by _row
        row = df["_row"].to_numpy()
        ca, cb = inv_a[row], inv_b[row]
        gi = df["_gi"].to_numpy()
        # The prompt's responses: those in at least one candidate pair, ordered by (prompt, id).
        used = np.zeros(len(keys), dtype=bool)
        used[ca] = used[cb] = True
        rg_all = np.empty(len(keys), dtype=np.int64)
        rg_all[ca], rg_all[cb] = gi, gi
        uid = np.flatnonzero(used)  # already in key order
        order = uid[np.argsort(rg_all[uid], kind="stable")]  # by prompt, then response id
        resp_g, resp_key = rg_all[order], keys[order]
        pos_of = np.full(len(keys), -1, dtype=np.int64)  # response number -> position in resp order
        pos_of[order] = np.arange(len(order))
        starts = np.flatnonzero(np.r_[True, resp_g[1:] != resp_g[:-1]]) if len(resp_g) else np.zeros(0, np.int64)
        k_all = np.diff(np.r_[starts, len(resp_g)]).astype(np.int64)
        local = np.arange(len(resp_g)) - np.repeat(starts, k_all)  # index within its prompt

        # One draw per prompt, in prompt-key order: the index of the point that seeds centre 0.
        g_of_prompt = df["_g"].to_numpy()[np.searchsorted(gi, resp_g[starts])]
        u = np.empty(len(starts))
        u[np.argsort(g_of_prompt, kind="stable")] = rng.random(len(starts))
        init_all = np.minimum((u * k_all).astype(np.int64), k_all - 1)

        gram_of, complete = self._stored_gram(read, col, pos_of[inv_a], pos_of[inv_b], resp_g, starts, k_all, local)
        d_own = np.empty(len(resp_g))  # distance to the centre of the response's own cluster
        cluster = np.empty(len(resp_g), dtype=np.int8)
        offsets = np.r_[0, np.cumsum(k_all)].astype(np.int64)
        vec_rows = None
        if (~complete).any():
            idx = np.flatnonzero(np.repeat(~complete, k_all))  # responses of those prompts
            vec_rows = np.full(len(resp_g), -1, dtype=np.int64)
            vec_rows[idx] = _embedding_rows(ctx, p["embedding"], resp_key[idx])
        table = f"embeddings_{p['embedding']}"
        ds = ctx.store.dataset(table, ctx.versions[table]) if vec_rows is not None else None
        for k in np.unique(k_all).tolist():
            for from_store in (True, False):
                prompts = np.flatnonzero((k_all == k) & (complete == from_store))
                step = max(1, self.block_responses // k) if not from_store else max(1, 4_000_000 // (k * k))
                for s0 in range(0, len(prompts), step):
                    blk = prompts[s0 : s0 + step]
                    idx = (offsets[blk][:, None] + np.arange(k, dtype=np.int64)[None, :]).ravel()
                    if from_store:
                        gram = gram_of(blk, k)
                    else:
                        x = _take_vectors(ds, vec_rows[idx]).reshape(len(blk), k, -1).astype(np.float64)
                        gram = np.matmul(x, x.transpose(0, 2, 1))
                    assign, d2 = two_means(gram, init_all[blk])
                    cluster[idx] = assign.ravel()
                    d_own[idx] = np.sqrt(np.take_along_axis(d2, assign[:, :, None].astype(np.int64), 2)).ravel()

        # Score each candidate pair: straddling the two clusters first, then the smaller sum of
        # distances to the own centres. The best straddling pair is exactly "the response nearest
        # each centre"; if that pair is not a candidate (or a cluster is empty) the next best is
        # taken, so the two picks always differ.
        ia, ib = pos_of[ca], pos_of[cb]
        straddle = cluster[ia] != cluster[ib]
        # Rounded so that mathematical ties (the two points of a 2-point cluster are equidistant
        # from its centre) are ties, broken by pair key, not by float noise.
        cost = np.round(d_own[ia] + d_own[ib], 9)
        rows = top_per_prompt(df, [(straddle, True), (cost, False)])
        ranked = rank_picks(df, rows, [(cost[rows], False)])
        extra = {"fallback_same_cluster": int((~straddle[rows]).sum()),
                 "prompts_gram_from_cosines": int(complete.sum()), "prompts_gram_from_vectors": int((~complete).sum())}
        return Picks(ranked, cost[ranked], extra)

    @staticmethod
    def _stored_gram(read, col, pa_, pb_, resp_g, starts, k_all, local):
        """Gram matrices from the cosines of every pair read (before candidate filters).

        `pa_`/`pb_`: position (in response order) of each read row's a/b, -1 if not a candidate
        response. Returns (gram_of(prompts, k) -> [P, k, k], complete[prompt]): a prompt is
        complete when all k(k-1)/2 pairs of its responses have a stored, non-null cosine."""
        cos = read[col].to_numpy().astype(np.float64)
        keep = (pa_ >= 0) & (pb_ >= 0) & ~np.isnan(cos)  # a null cosine reads as NaN
        ra, rb, cos = pa_[keep], pb_[keep], cos[keep]
        same = resp_g[ra] == resp_g[rb]
        ra, rb, cos = ra[same], rb[same], cos[same]
        prompt_of = np.repeat(np.arange(len(starts)), k_all)
        counts = np.bincount(prompt_of[ra], minlength=len(starts))
        complete = counts == k_all * (k_all - 1) // 2
        # Entries sorted by prompt, so a block of prompts is found by one isin/searchsorted.
        o = np.argsort(prompt_of[ra], kind="stable")
        ep, ea, eb, ec = prompt_of[ra][o], local[ra][o], local[rb][o], cos[o]

        def gram_of(prompts, k):
            g = np.broadcast_to(np.eye(k), (len(prompts), k, k)).copy()
            sel = np.flatnonzero(np.isin(ep, prompts))
            slot = np.searchsorted(prompts, ep[sel])
            g[slot, ea[sel], eb[sel]] = ec[sel]
            g[slot, eb[sel], ea[sel]] = ec[sel]
            return g

        return gram_of, complete


def _embedding_rows(ctx: Context, name: str, keys: np.ndarray) -> np.ndarray:
    """Row positions in embeddings_<name> of the responses with id keys `keys`."""
    table = f"embeddings_{name}"
    ds = ctx.store.dataset(table, ctx.versions[table])
    stored = id_keys(ds.to_table(columns=["id"]).column("id"))
    order = np.argsort(stored, kind="stable")
    i = np.minimum(np.searchsorted(stored[order], keys), max(len(stored) - 1, 0))
    found = (stored[order][i] == keys) if len(stored) else np.zeros(len(keys), bool)
    if not found.all():
        raise UsageError(
            f"{int((~found).sum())} responses with a cosine in pair_features have no vector in '{table}': "
            f"re-run `pairsift embed --name {name}`"
        )
    return order[i]


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
