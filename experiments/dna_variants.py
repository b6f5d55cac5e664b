"""Zero-shot variant-effect scores with a DNA-xLSTM: log-likelihood ratio of alt vs ref allele.

    python -m experiments.dna_variants --ckpt runs/dna_pretrain --genome hg38.fa[.gz] \\
        --variants variants.vcf|.tsv|.csv --out scores.tsv [--window 1024] [--objective auto]

Variants: a VCF or a table with ``chrom, pos (1-based), ref, alt`` (single-base substitutions); the
reference allele is checked against the genome. ``--objective auto`` takes the run's pretraining
objective (``config.json``), else MLM for bidirectional / RCPS models and CLM for causal ones.
Writes the input columns plus ``llr`` (negative = the model prefers the reference); when the table
has a 0/1 ``label`` column it also prints the ROC-AUC of ``-llr`` for label 1 (e.g. pathogenic).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def pretraining_objective(ckpt, model) -> str:
    """The ``objective`` of a ``dna_pretrain`` run, else "mlm" for non-causal and "clm" for causal models."""
    config = Path(ckpt) / "config.json"
    if config.is_file():
        objective = json.loads(config.read_text()).get("objective")
        if objective in ("mlm", "clm"):
            return objective
    return "clm" if model.config.causal else "mlm"


def main() -> None:
    from absl import app, flags

    ckpt = flags.DEFINE_string("ckpt", None, "dna_pretrain workdir or converted checkpoint", required=True)
    genome = flags.DEFINE_string("genome", None, "genome FASTA (plain, gzip or bgzip)", required=True)
    variants = flags.DEFINE_string("variants", None, "VCF or chrom,pos,ref,alt table", required=True)
    out = flags.DEFINE_string("out", None, "output TSV", required=True)
    window = flags.DEFINE_integer("window", 1024, "bp around each variant")
    objective = flags.DEFINE_enum("objective", "auto", ["auto", "mlm", "clm"], "scoring rule")
    batch_size = flags.DEFINE_integer("batch_size", 16, "variants per forward pass")
    tfds_dir = flags.DEFINE_string("tfds_dir", None,
                                   "where the prepared genome goes (default: tfds_builders.default_data_dir)")

    def run(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        import numpy as np

        from bioxlstm_jax.data.dna import Genome
        from bioxlstm_jax.evaluation.proteingym import roc_auc
        from bioxlstm_jax.inference import load_lm
        from bioxlstm_jax.inference.dna import read_variants, variant_scores

        rows = read_variants(variants.value)
        model, params = load_lm(ckpt.value)
        obj = pretraining_objective(ckpt.value, model) if objective.value == "auto" else objective.value
        scores = variant_scores(model, params, Genome(genome.value, tfds_dir.value), rows, window=window.value,
                                objective=obj, batch_size=batch_size.value, progress=True)
        extra = list(rows[0].fields)
        lines = ["\t".join(["chrom", "pos", "ref", "alt", *extra, "llr"])]
        lines += ["\t".join([v.chrom, str(v.pos), v.ref, v.alt, *(v.fields[k] for k in extra), f"{s:.6g}"])
                  for v, s in zip(rows, scores)]
        Path(out.value).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(out.value).with_name(f".{Path(out.value).name}.tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(out.value)
        print(f"{len(rows)} variants scored ({obj}, window {window.value} bp): llr mean {scores.mean():.4f}, "
              f"median {np.median(scores):.4f}, {np.mean(scores < 0):.1%} negative -> {out.value}")
        if "label" in extra:
            labels = [int(v.fields["label"]) for v in rows]
            if len(set(labels)) == 2:
                print(f"ROC-AUC of -llr for label 1: {roc_auc(-scores, labels):.4f}")

    app.run(run)


if __name__ == "__main__":
    sys.exit(main())
