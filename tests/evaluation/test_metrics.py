"""Classification metrics against hand-computed values."""

import numpy as np
import pytest

from bioxlstm_jax.evaluation.metrics import classification_metrics, roc_auc, spearman, summarize_seeds


def test_binary_metrics_by_hand():
    y = [1, 1, 1, 0, 0, 0, 0, 1]
    p = [1, 1, 0, 0, 0, 1, 0, 1]  # tp 3, fn 1, fp 1, tn 3
    m = classification_metrics(y, p)
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["mcc"] == pytest.approx((3 * 3 - 1 * 1) / np.sqrt(4 * 4 * 4 * 4))
    assert m["f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))


def test_multiclass_metrics_by_hand_and_degenerate_cases():
    y = [0, 0, 1, 1, 2, 2]
    p = [0, 1, 1, 1, 2, 0]
    m = classification_metrics(y, p, 3)
    # confusion rows (true) [[1,1,0],[0,2,0],[1,0,1]]: Gorodkin MCC
    c, s, t, pk = 4, 6, np.array([2, 2, 2]), np.array([2, 3, 1])
    assert m["mcc"] == pytest.approx((c * s - t @ pk) / np.sqrt((s**2 - pk @ pk) * (s**2 - t @ t)))
    assert m["f1"] == pytest.approx(np.mean([2 * 1 / 4, 2 * 2 / 5, 2 * 1 / 3]))
    const = classification_metrics([0, 1, 1], [1, 1, 1])
    assert const["mcc"] == 0.0 and const["accuracy"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        classification_metrics([0, 1], [0])


def test_summarize_seeds():
    out = summarize_seeds([{"accuracy": 0.5}, {"accuracy": 0.7}, {"accuracy": 0.6}])
    assert out["accuracy"]["mean"] == pytest.approx(0.6) and out["accuracy"]["min"] == 0.5 and out["accuracy"]["max"] == 0.7


def test_roc_auc_counts_ordered_pairs_and_spearman_ranks():
    rng = np.random.default_rng(0)
    s, y = rng.normal(size=50), rng.integers(0, 2, 50)
    pairs = [(a > b) + 0.5 * (a == b) for a, la in zip(s, y) for b, lb in zip(s, y) if la == 1 and lb == 0]
    assert roc_auc(s, y) == pytest.approx(np.mean(pairs))
    assert spearman([1, 2, 3, 4], [10, 20, 30, 25]) == pytest.approx(0.8)
