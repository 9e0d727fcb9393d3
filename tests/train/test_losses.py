"""RPO losses against a plain-Python evaluation of docs/METHODS.md §4."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pairsift.train.losses import rpo_diagonal_loss, rpo_loss, rpo_weights


def _cos(u, v):
    dot = sum(a * b for a, b in zip(u, v))
    return dot / (math.sqrt(sum(a * a for a in u)) * math.sqrt(sum(b * b for b in v)))


def _neg_log_sigmoid(x):
    return math.log1p(math.exp(-x)) if x > -30 else -x


def reference_rpo(dc, dr, ec, er, beta, tau):
    """mean_i mean_j -log sigma(beta * w_ij * (D+_i - D-_j)), w_ij = softmax_j(-(1 - cos)/tau)."""
    total = 0.0
    for i in range(len(dc)):
        logits = [-(1 - _cos(ec[i], er[j])) / tau for j in range(len(dr))]
        m = max(logits)
        z = sum(math.exp(v - m) for v in logits)
        w = [math.exp(v - m) / z for v in logits]
        total += sum(_neg_log_sigmoid(beta * w[j] * (dc[i] - dr[j])) for j in range(len(dr))) / len(dr)
    return total / len(dc)


def reference_diagonal(dc, dr, beta, a=0.8):
    n = len(dc)
    total = 0.0
    for i in range(n):
        own = _neg_log_sigmoid(beta * (dc[i] - dr[i]))
        if n == 1:
            total += own
            continue
        others = sum(_neg_log_sigmoid(beta * (dc[i] - dr[j])) for j in range(n) if j != i) / (n - 1)
        total += a * own + (1 - a) * others
    return total / n


# A hand-built batch: 3 pairs, 2-d prompt embeddings (not normalised: the loss normalises).
DC = [1.5, -0.25, 3.0]
DR = [-2.0, 0.5, 1.0]
EMB = [[1.0, 0.0], [0.6, 0.8], [-2.0, 0.5]]


def test_paired_matches_the_formula_on_a_hand_built_batch():
    got, w = rpo_loss(torch.tensor(DC), torch.tensor(DR), torch.tensor(EMB), beta=0.1, tau=0.5)
    assert got.item() == pytest.approx(reference_rpo(DC, DR, EMB, EMB, 0.1, 0.5), rel=1e-6)
    assert torch.allclose(w.sum(dim=1), torch.ones(3))
    assert w[0, 0] > w[0, 2]  # the same prompt weighs more than a dissimilar one


def test_unpaired_matches_the_formula_with_unequal_sides():
    ec, er = EMB[:2], [[0.0, 1.0], [1.0, 1.0], [-1.0, 0.2], [0.3, -0.9]]
    dr = [0.2, -1.0, 2.5, 0.0]
    got, w = rpo_loss(torch.tensor(DC[:2]), torch.tensor(dr), torch.tensor(ec), torch.tensor(er), beta=0.3, tau=0.25)
    assert w.shape == (2, 4)
    assert got.item() == pytest.approx(reference_rpo(DC[:2], dr, ec, er, 0.3, 0.25), rel=1e-6)


def test_diagonal_matches_the_formula():
    got = rpo_diagonal_loss(torch.tensor(DC), torch.tensor(DR), beta=0.1)
    assert got.item() == pytest.approx(reference_diagonal(DC, DR, 0.1), rel=1e-6)
    one = rpo_diagonal_loss(torch.tensor(DC[:1]), torch.tensor(DR[:1]), beta=0.1)
    assert one.item() == pytest.approx(_neg_log_sigmoid(0.1 * (DC[0] - DR[0])), rel=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 5),
    st.integers(1, 5),
    st.floats(0.01, 2.0),
    st.floats(0.05, 2.0),
    st.randoms(use_true_random=False),
)
def test_rpo_against_reference_random(m, n, beta, tau, rnd):
    dc = [rnd.uniform(-20, 20) for _ in range(m)]
    dr = [rnd.uniform(-20, 20) for _ in range(n)]
    ec = [[rnd.uniform(-1, 1) + 1e-3 for _ in range(3)] for _ in range(m)]
    er = [[rnd.uniform(-1, 1) + 1e-3 for _ in range(3)] for _ in range(n)]
    got, _ = rpo_loss(torch.tensor(dc, dtype=torch.float64), torch.tensor(dr, dtype=torch.float64),
                      torch.tensor(ec), torch.tensor(er), beta=beta, tau=tau)
    assert got.item() == pytest.approx(reference_rpo(dc, dr, ec, er, beta, tau), rel=1e-4, abs=1e-6)
    if m == n:
        d = rpo_diagonal_loss(torch.tensor(dc), torch.tensor(dr), beta=beta)
        assert d.item() == pytest.approx(reference_diagonal(dc, dr, beta), rel=1e-4, abs=1e-6)


def test_every_variant_is_ln2_at_theta_equals_ref():
    zeros = torch.zeros(4)
    emb = torch.randn(4, 8)
    assert rpo_loss(zeros, zeros, emb)[0].item() == pytest.approx(math.log(2))
    assert rpo_loss(zeros[:3], zeros, emb[:3], emb)[0].item() == pytest.approx(math.log(2))
    assert rpo_diagonal_loss(zeros, zeros).item() == pytest.approx(math.log(2))


def test_weights_and_loss_are_fp32_for_bf16_inputs():
    dc = torch.tensor(DC, dtype=torch.bfloat16)
    emb = torch.tensor(EMB, dtype=torch.bfloat16)
    loss, w = rpo_loss(dc, dc.flip(0), emb)
    assert loss.dtype == torch.float32 and w.dtype == torch.float32
    assert rpo_weights(emb, emb, 0.5).dtype == torch.float32


def test_paired_needs_equal_sides():
    with pytest.raises(ValueError, match="as many chosen"):
        rpo_loss(torch.zeros(2), torch.zeros(3), torch.zeros(2, 4))
