"""Embeddings of the sequences of a FASTA with a DNA-xLSTM backbone.

    python -m experiments.dna_embed --ckpt runs/dna_pretrain --fasta seqs.fa[.gz] --out embeddings/ [--batch_size 8]

Writes ``pooled.npy`` (N, D) (mean over positions), ``per_position.npy`` (total bases, D) with
``offsets.npy`` (sequence i = rows ``offsets[i]:offsets[i+1]``) and ``ids.txt``; D is twice the
model width for RCPS models (forward and RC-branch halves). See ``bioxlstm_jax.inference.dna``.
"""

from __future__ import annotations

import sys


def main() -> None:
    from absl import app, flags

    ckpt = flags.DEFINE_string("ckpt", None, "dna_pretrain workdir or converted checkpoint", required=True)
    fasta = flags.DEFINE_string("fasta", None, "FASTA of sequences to embed", required=True)
    out = flags.DEFINE_string("out", None, "output directory", required=True)
    batch_size = flags.DEFINE_integer("batch_size", 8, "sequences per forward pass")

    def run(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        from bioxlstm_jax.inference import load_lm
        from bioxlstm_jax.inference.dna import write_embeddings

        model, params = load_lm(ckpt.value)
        paths = write_embeddings(model, params, fasta.value, out.value, batch_size=batch_size.value)
        import numpy as np

        shape = np.load(paths["pooled"], mmap_mode="r").shape
        print(f"embedded {shape[0]} sequences (width {shape[1]}) into {out.value}: "
              + ", ".join(p.name for p in paths.values()))

    app.run(run)


if __name__ == "__main__":
    sys.exit(main())
