"""Inference with trained or converted language models, for every domain.

* any model: ``load_lm`` (a training workdir or converted checkpoint), ``generate`` (prefill, then
  O(1)-state decoding), ``sample_logits``, ``log_probs``;
* proteins: ``context_prompt``, ``inpainting_prompt``, ``generate_proteins``;
* molecules: ``load_vocab``, ``generate_smiles``, ``smiles_log_likelihood``;
* DNA: ``embed``, ``write_embeddings``, ``Variant``, ``read_variants``, ``variant_scores``.
"""

from bioxlstm_jax.inference.chem import generate_smiles, load_vocab, smiles_log_likelihood
from bioxlstm_jax.inference.dna import Variant, embed, read_variants, variant_scores, write_embeddings
from bioxlstm_jax.inference.generate import generate, log_probs, sample_logits
from bioxlstm_jax.inference.loading import load_lm
from bioxlstm_jax.inference.protein import context_prompt, generate_proteins, inpainting_prompt

__all__ = ["load_lm", "generate", "sample_logits", "log_probs", "context_prompt", "inpainting_prompt",
           "generate_proteins", "load_vocab", "generate_smiles", "smiles_log_likelihood", "embed", "write_embeddings",
           "Variant", "read_variants", "variant_scores"]
