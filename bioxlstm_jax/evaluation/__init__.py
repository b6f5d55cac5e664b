"""Evaluation: shared metrics (``spearman``, ``roc_auc``, ``classification_metrics``, ``summarize_seeds``),
ProteinGym zero-shot fitness (``evaluation.proteingym``) and chemistry metrics of generated molecules
(``evaluation.chem``, needs the chem extra)."""

from bioxlstm_jax.evaluation.metrics import classification_metrics, roc_auc, spearman, summarize_seeds

__all__ = ["classification_metrics", "roc_auc", "spearman", "summarize_seeds"]
