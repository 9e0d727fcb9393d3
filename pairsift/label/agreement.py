"""Inter-annotator agreement over the four vote categories (a, b, tie, both bad).

The input is a count matrix ``m[i, j]``: how many annotators put pair i in category j. Only
pairs with at least two votes say anything about agreement; the others are ignored.

- **raw agreement**: the mean over pairs of the share of agreeing annotator pairs,
  ``P_i = (sum_j m_ij^2 - n_i) / (n_i (n_i - 1))``.
- **Fleiss' kappa** (Fleiss 1971), with the usual generalisation to a varying number of
  annotators per pair: ``p_j = sum_i m_ij / sum_i n_i``, ``P_e = sum_j p_j^2``,
  ``kappa = (mean P_i - P_e) / (1 - P_e)``; equal to Fleiss' formula when every n_i is equal.
- **Cohen's kappa** (Cohen 1960) for two annotators over the pairs both labelled:
  ``(p_o - p_e) / (1 - p_e)`` with ``p_e = sum_c p_1(c) p_2(c)``.

A kappa is None when it is undefined (no pair with two votes, or chance agreement 1: every vote
in one category).
"""

from __future__ import annotations

import numpy as np


def raw_agreement(m: np.ndarray) -> float | None:
    m = np.asarray(m, dtype=np.float64)
    n = m.sum(axis=1)
    keep = n >= 2
    if not keep.any():
        return None
    m, n = m[keep], n[keep]
    p_i = ((m * m).sum(axis=1) - n) / (n * (n - 1))
    return float(p_i.mean())


def fleiss_kappa(m: np.ndarray) -> float | None:
    m = np.asarray(m, dtype=np.float64)
    n = m.sum(axis=1)
    keep = n >= 2
    if not keep.any():
        return None
    m, n = m[keep], n[keep]
    p_bar = (((m * m).sum(axis=1) - n) / (n * (n - 1))).mean()
    p_j = m.sum(axis=0) / n.sum()
    p_e = float((p_j * p_j).sum())
    if p_e >= 1.0 - 1e-12:
        return None
    return float((p_bar - p_e) / (1.0 - p_e))


def cohen_kappa(x: list[str], y: list[str]) -> float | None:
    """Cohen's kappa of two annotators' labels of the same items (same order)."""
    if len(x) != len(y):
        raise ValueError("cohen_kappa: both annotators need a label per item")
    if not x:
        return None
    cats = sorted(set(x) | set(y))
    index = {c: i for i, c in enumerate(cats)}
    conf = np.zeros((len(cats), len(cats)), dtype=np.float64)
    np.add.at(conf, ([index[v] for v in x], [index[v] for v in y]), 1)
    total = conf.sum()
    p_o = np.trace(conf) / total
    p_e = float((conf.sum(axis=1) / total) @ (conf.sum(axis=0) / total))
    if p_e >= 1.0 - 1e-12:
        return None
    return float((p_o - p_e) / (1.0 - p_e))
