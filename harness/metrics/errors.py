"""Standard errors of test-set metrics over the examples, so `harness compare` can tell a change
from the test set's own sampling error (a 200-example accuracy of 0.80 is only known to about
+/-0.03). Accuracy: the binomial formula. Macro-F1 and ROUGE: a seeded bootstrap over examples
(vectorized with numpy; scikit-learn's f1_score per resample would cost ~0.5 s per evaluation)."""

from __future__ import annotations

import math

import numpy as np

RESAMPLES = 1000


def binomial_se(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n) if n else math.nan


def _resample_index(n: int, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def mean_se(values) -> float:
    """Bootstrap standard error of a mean (per-example ROUGE)."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return math.nan
    return float(values[_resample_index(len(values))].mean(axis=1).std(ddof=1))


def macro_f1_se(predictions, references) -> float:
    """Bootstrap standard error of macro-F1 (each class's F1 averaged over the classes present)."""
    classes = sorted(set(references) | set(predictions), key=str)
    code = {c: i for i, c in enumerate(classes)}
    pred = np.array([code[p] for p in predictions])
    ref = np.array([code[r] for r in references])
    n, k = len(ref), len(classes)
    if n < 2:
        return math.nan
    idx = _resample_index(n)
    p, r = pred[idx], ref[idx]  # (resamples, n)
    f1s = []
    for c in range(k):
        tp = ((p == c) & (r == c)).sum(axis=1)
        fp = ((p == c) & (r != c)).sum(axis=1)
        fn = ((p != c) & (r == c)).sum(axis=1)
        denom = 2 * tp + fp + fn
        f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), np.nan)
        f1s.append(f1)
    # scikit-learn's macro average is over the labels that appear in references or predictions
    present = np.stack([((p == c) | (r == c)).any(axis=1) for c in range(k)])
    scores = np.nansum(np.where(present, np.stack(f1s), 0.0), axis=0) / np.maximum(present.sum(axis=0), 1)
    return float(scores.std(ddof=1))
