"""Inference with trained or converted language models: loading, sampling, generation, scoring."""

from bioxlstm_jax.inference.chem import generate_smiles, load_vocab, smiles_log_likelihood
from bioxlstm_jax.inference.generate import generate, sample_logits
from bioxlstm_jax.inference.loading import load_lm

__all__ = ["load_lm", "generate", "sample_logits", "generate_smiles", "load_vocab", "smiles_log_likelihood"]
