"""Embeddings of the sequences of a FASTA with a DNA-xLSTM backbone.

    python -m experiments.dna_embed --config.ckpt=runs/dna_pretrain --config.fasta=seqs.fa[.gz] \\
        [--workdir runs/dna_embed] [--config.batch_size=8]

Writes ``pooled.npy`` (N, D) (mean over positions), ``per_position.npy`` (total bases, D) with
``offsets.npy`` (sequence i = rows ``offsets[i]:offsets[i+1]``) and ``ids.txt`` into the workdir; D is
twice the model width for RCPS models (forward and RC-branch halves). Sequences of one length are
batched together; each length compiles once (seconds per length for the small models on a CPU).
See ``bioxlstm_jax.inference.dna``.
"""

from __future__ import annotations

import ml_collections
from ml_collections.config_dict import placeholder

from bioxlstm_jax.jobs import dna_embed, model_flags, run


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.model = model_flags()  # XLSTMConfig fields over the checkpoint's: --config.model.kernel=xla, .dtype=bfloat16, ...
    c.ckpt = placeholder(str)  # dna_pretrain workdir or converted checkpoint (required)
    c.fasta = placeholder(str)  # FASTA of sequences to embed (required)
    c.batch_size = 8  # sequences per forward pass
    return c


if __name__ == "__main__":
    run(dna_embed, get_config, "runs/dna_embed")
