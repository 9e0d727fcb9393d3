"""Relative preference optimisation (RPO, arXiv 2402.10958), docs/METHODS.md §4.

Inputs are per-item log-ratios ``D = logp_theta(y|x) - logp_ref(y|x)`` (summed over response
tokens, no beta). Every chosen item i is contrasted with every rejected item j:
``L_ij = D+_i - D-_j``. Weights come from the prompts' embeddings::

    w_ij = softmax_j( -(1 - cos(e_i, e_j)) / tau )          (each row sums to 1)
    loss = mean_i mean_j  -log sigma(beta * w_ij * L_ij)     (the weight sits inside the sigmoid)

The diagonal variant needs no embeddings: ``0.8 * l_ii + 0.2 * mean_{j != i} l_ij`` with
``l_ij = -log sigma(beta * L_ij)``. At theta = ref every L_ij is 0, so every variant is ln 2.

Weights and the loss are computed in fp32 whatever the model's dtype. This name is not TRL's
``rpo_alpha`` (a different method).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rpo_weights(e_chosen: torch.Tensor, e_rejected: torch.Tensor, tau: float) -> torch.Tensor:
    """[M, N] fp32 weights: row i is a softmax over rejected items j of -(1 - cos(e_i, e_j)) / tau."""
    a = F.normalize(e_chosen.float(), dim=-1)
    b = F.normalize(e_rejected.float(), dim=-1)
    cos = a @ b.T
    return torch.softmax(-(1.0 - cos) / tau, dim=1)


def rpo_loss(
    chosen_logratios: torch.Tensor,
    rejected_logratios: torch.Tensor,
    e_chosen: torch.Tensor,
    e_rejected: torch.Tensor | None = None,
    *,
    beta: float = 0.1,
    tau: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embedding-weighted RPO loss and its [M, N] weights.

    Paired data: M = N and ``e_rejected`` is None (rejected j has prompt x_j, the same prompts).
    Unpaired data: chosen and rejected come from different prompts; pass their own embeddings.
    """
    c = chosen_logratios.float()
    r = rejected_logratios.float()
    if e_rejected is None:
        if c.shape != r.shape:
            raise ValueError("paired RPO needs as many chosen as rejected items; pass e_rejected for unpaired data")
        e_rejected = e_chosen
    w = rpo_weights(e_chosen, e_rejected, tau)
    contrast = c[:, None] - r[None, :]
    losses = -F.logsigmoid(beta * w * contrast)
    return losses.mean(dim=1).mean(), w


def rpo_diagonal_loss(
    chosen_logratios: torch.Tensor,
    rejected_logratios: torch.Tensor,
    *,
    beta: float = 0.1,
    diagonal_weight: float = 0.8,
) -> torch.Tensor:
    """``diagonal_weight * l_ii + (1 - diagonal_weight) * mean_{j != i} l_ij``, averaged over i.

    A batch of one pair has no off-diagonal term: its loss is l_11 (plain DPO).
    """
    c = chosen_logratios.float()
    r = rejected_logratios.float()
    losses = -F.logsigmoid(beta * (c[:, None] - r[None, :]))
    n = losses.shape[0]
    diag = losses.diagonal()
    if n == 1:
        return diag.mean()
    off = (losses.sum(dim=1) - diag) / (n - 1)
    return (diagonal_weight * diag + (1.0 - diagonal_weight) * off).mean()
