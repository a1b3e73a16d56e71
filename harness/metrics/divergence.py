"""Divergences between two models' predictions and between their representations: the one place the
harness computes them (DPO's KL to its reference, retention's drift from the base model and the
representation drift of encoders all read these)."""

from __future__ import annotations

import math


def next_token_kl(logp, logq):
    """KL(p || q) of next-token distributions given as log-probabilities over the vocabulary (last
    dimension), one value per position: sum_v p(v) (log p(v) - log q(v)), in nats."""
    return (logp.exp() * (logp - logq)).sum(-1)


def linear_cka(x, y) -> float:
    """Linear centred kernel alignment of two representations of the same n inputs (n x d1, n x d2):
    1 where one is a rotation and scaling of the other, towards 0 where they share nothing (Kornblith
    et al., 2019, eq. for the linear kernel: ||Y'X||_F^2 / (||X'X||_F ||Y'Y||_F) on centred columns).
    Computed in float64 by hand: torchmetrics and scikit-learn have no CKA."""
    import torch

    x = x.double() - x.double().mean(0, keepdim=True)
    y = y.double() - y.double().mean(0, keepdim=True)
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    norms = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    return float(cross / norms) if float(norms) > 0 else math.nan


def mean_and_se(values: list[float]) -> tuple[float, float]:
    """The mean and its standard error sd / sqrt(n) (NaN below two values)."""
    n = len(values)
    mean = sum(values) / n if n else 0.0
    if n < 2:
        return mean, float("nan")
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)
