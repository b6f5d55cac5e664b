"""Homolog-conditioned protein generation with a Prot-xLSTM.

    python -m experiments.prot_generate --config.ckpt=runs/prot_pretrain --config.msa=family.a3m \\
      [--workdir runs/prot_generate] [--config.n_context=20] [--config.num_samples=16] \\
      [--config.temperature=1.0 --config.top_k=10 --config.top_p=1.0] \\
      [--config.target_seq=MKT... --config.spans=31-40,80-85]   # inpaint residues 31-40, 80-85 (1-based)

``ckpt``: a training workdir (its best, else latest, params) or a converted official checkpoint. The
context is ``n_context`` proteins drawn at random (``context_seed``) from ``msa`` (a3m, a2m, FASTA or
Stockholm), gap-free; the prompt is prefilled once in segments, then each protein is decoded token by
token from the recurrent state until ``<cls>``. Writes ``generated.fasta`` into the workdir; the
header of each sample gives its log-likelihood, perplexity, token count and whether it completed.
"""

from __future__ import annotations

import ml_collections
from ml_collections.config_dict import placeholder

from bioxlstm_jax.jobs import model_flags, prot_generate, run


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.model = model_flags()  # XLSTMConfig fields over the checkpoint's: --config.model.kernel=xla, .dtype=bfloat16, ...
    c.ckpt = placeholder(str)  # training workdir or converted checkpoint (required)
    c.msa = placeholder(str)  # homologs for the context (a3m / a2m / FASTA / Stockholm, .gz ok) (required)
    c.n_context = 20  # context proteins (-1: all)
    c.context_seed = 0  # seed of the context draw
    c.num_samples = 16  # proteins to generate
    c.batch_size = 16  # proteins decoded together
    c.temperature = 1.0
    c.top_k = 10  # keep the k most likely tokens (0: all, 1: greedy)
    c.top_p = 1.0  # nucleus sampling mass
    c.max_new_tokens = 1000  # longest protein (tokens)
    c.seed = 0  # sampling seed
    c.target_seq = placeholder(str)  # inpainting: the protein whose spans are regenerated
    c.spans = placeholder(str)  # inpainting: 1-based inclusive residue ranges, e.g. 31-40,80-85
    c.segment_length = 4096  # prefill segment (tokens per forward pass)
    c.context_devices = 1  # devices each prefill segment is split over (context parallelism; divides segment_length)
    return c


if __name__ == "__main__":
    run(prot_generate, get_config, "runs/prot_generate")
