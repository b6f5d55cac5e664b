"""Zero-shot variant-effect scores with a DNA-xLSTM: log-likelihood ratio of alt vs ref allele.

    python -m experiments.dna_variants --config.ckpt=runs/dna_pretrain --config.genome=hg38.fa[.gz] \\
        --config.variants=variants.vcf|.tsv|.csv [--workdir runs/dna_variants] [--config.window=1024]

Variants: a VCF or a table with ``chrom, pos (1-based), ref, alt`` (single-base substitutions); the
reference allele is checked against the genome. ``config.objective=auto`` takes the run's pretraining
objective (``config.json``), else MLM for bidirectional / RCPS models and CLM for causal ones.
Writes ``scores.tsv`` into the workdir: the input columns plus ``llr`` (negative = the model prefers
the reference); when the table has a 0/1 ``label`` column it also prints the ROC-AUC of ``-llr`` for
label 1 (e.g. pathogenic).
"""

from __future__ import annotations

import ml_collections
from ml_collections.config_dict import placeholder

from bioxlstm_jax.jobs import dna_variants, model_flags, run


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.model = model_flags()  # XLSTMConfig fields over the checkpoint's: --config.model.kernel=xla, .dtype=bfloat16, ...
    c.ckpt = placeholder(str)  # dna_pretrain workdir or converted checkpoint (required)
    c.genome = placeholder(str)  # genome FASTA, plain, gzip or bgzip (required)
    c.variants = placeholder(str)  # VCF or chrom,pos,ref,alt table (required)
    c.window = 1024  # bp around each variant
    c.objective = "auto"  # auto | mlm | clm
    c.batch_size = 16  # variants per forward pass
    c.tfds_dir = placeholder(str)  # where the prepared genome goes (unset: $BIOXLSTM_DATA_DIR, else ~/.cache/bioxlstm_jax)
    return c


if __name__ == "__main__":
    run(dna_variants, get_config, "runs/dna_variants")
