"""Metrics shared by every domain: rank correlation and ROC-AUC (fitness, variant effects, in-context
ranking), the ProteinGym leaderboard's ranking metrics (MCC at the median prediction, NDCG and recall
of the top 10 %), classification metrics of the DNA / Nucleotide Transformer benchmarks and their
summary over seeds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["spearman", "roc_auc", "mcc_at_median", "ndcg_top", "top_recall", "classification_metrics",
           "summarize_seeds"]


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


def mcc_at_median(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Matthews' correlation of binary ``labels`` with ``scores >= median(scores)`` (ProteinGym's MCC:
    the prediction is binarized at its own median)."""
    scores = np.asarray(scores, float)
    return classification_metrics(np.asarray(labels, int), (scores >= np.median(scores)).astype(int), 2)["mcc"]


def ndcg_top(true: Sequence[float], scores: Sequence[float], top: float = 10.0) -> float:
    """ProteinGym's NDCG of the top ``top`` % (k = floor(N top / 100) items): gains are the true values
    min-max scaled to [0, 1]; DCG sums gain / log2(rank + 1) over the k best-scored items, divided by
    the same sum over the k items with the largest gains (0 when no top-k item has a gain)."""
    true, scores = np.asarray(true, float), np.asarray(scores, float)
    k = int(np.floor(len(true) * top / 100))
    gains = (true - true.min()) / (true.max() - true.min())

    def dcg(order_by):
        ranks = np.argsort(np.argsort(-order_by)) + 1
        keep = (ranks <= k) & (gains != 0)
        return float(np.sum(gains[keep] / np.log2(ranks[keep] + 1)))

    best = dcg(gains)
    return dcg(scores) / best if best > 0 else 0.0


def top_recall(true: Sequence[float], scores: Sequence[float], top: float = 10.0) -> float:
    """ProteinGym's top-``top`` % recall: of the items above the (100 - top) percentile of ``true``
    (linear interpolation), the fraction also above that percentile of ``scores`` (0 if none)."""
    true, scores = np.asarray(true, float), np.asarray(scores, float)
    top_true = true > np.percentile(true, 100 - top)
    top_pred = scores > np.percentile(scores, 100 - top)
    return float((top_true & top_pred).sum() / top_true.sum()) if top_true.any() else 0.0



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
