"""Metrics shared by every domain: rank correlation and ROC-AUC (fitness, variant effects, in-context
ranking), classification metrics of the DNA / Nucleotide Transformer benchmarks and their summary
over seeds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["spearman", "roc_auc", "classification_metrics", "summarize_seeds"]


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation of ``a`` and ``b`` (scipy; ties get their mean rank)."""
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def roc_auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (ties count one half)."""
    from scipy.stats import rankdata

    scores, labels = np.asarray(scores, float), np.asarray(labels, int)
    pos, neg = labels == 1, labels == 0
    if not pos.any() or not neg.any():
        raise ValueError("roc_auc needs both positive and negative labels")
    ranks = rankdata(scores)
    return float((ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * neg.sum()))



def classification_metrics(labels, predictions, num_classes: int | None = None) -> dict[str, float]:
    """``{"accuracy", "mcc", "f1"}`` of integer labels vs predicted classes (N,).

    MCC is Matthews' correlation (Gorodkin's multi-class form, 0 when undefined). F1 is the F1 of
    class 1 for two classes (``f1_binary``, as the NT benchmark), else the unweighted mean over classes.
    """
    y, p = np.asarray(labels, np.int64), np.asarray(predictions, np.int64)
    if y.shape != p.shape or y.ndim != 1 or not len(y):
        raise ValueError(f"labels and predictions must be equal non-empty 1-D arrays, got {y.shape}, {p.shape}")
    k = int(num_classes or max(y.max(), p.max()) + 1)
    cm = np.zeros((k, k), np.float64)
    np.add.at(cm, (y, p), 1.0)
    n, correct = cm.sum(), np.trace(cm)
    true, pred = cm.sum(1), cm.sum(0)
    denom = np.sqrt((n**2 - pred @ pred) * (n**2 - true @ true))
    mcc = float((correct * n - true @ pred) / denom) if denom > 0 else 0.0
    tp = np.diag(cm)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(true + pred > 0, 2 * tp / (true + pred), 0.0)
    return {"accuracy": float(correct / n), "mcc": mcc, "f1": float(f1[1] if k == 2 else f1.mean())}


def summarize_seeds(per_seed: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """``{metric: {"mean", "min", "max", "std"}}`` over the seeds' metric dicts (the paper's table)."""
    out = {}
    for key in per_seed[0]:
        v = np.asarray([m[key] for m in per_seed], np.float64)
        out[key] = {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max()), "std": float(v.std())}
    return out
