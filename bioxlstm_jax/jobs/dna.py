"""DNA inference jobs: embeddings of a FASTA (``dna_embed``) and zero-shot variant-effect scores
(``dna_variants``), each ``job(config, workdir)`` over the config of ``experiments/<job>.py``."""

from __future__ import annotations

import json
from pathlib import Path

import ml_collections
import numpy as np

from bioxlstm_jax.data.dna import VOCAB
from bioxlstm_jax.io import atomic_write
from bioxlstm_jax.jobs.cli import load_model, require, require_positive

__all__ = ["dna_embed", "dna_variants", "pretraining_objective"]


def dna_embed(c: ml_collections.ConfigDict, workdir: str) -> dict[str, Path]:
    """Embeddings of every sequence of ``c.fasta`` in ``workdir`` (``inference.dna.write_embeddings``:
    ``pooled.npy``, ``per_position.npy``, ``offsets.npy``, ``ids.txt``); returns their paths."""
    from bioxlstm_jax.data.formats import GENOME_ALPHABET, read_fasta
    from bioxlstm_jax.inference.dna import write_embeddings

    require(c, "ckpt", "fasta")
    require_positive(c, "batch_size")
    for _ in read_fasta(c.fasta, alphabet=GENOME_ALPHABET):  # the whole input is checked before the model loads
        pass
    model, params = load_model(c, vocab_size=len(VOCAB), domain="DNA")
    paths = write_embeddings(model, params, c.fasta, workdir, batch_size=c.batch_size)
    shape = np.load(paths["pooled"], mmap_mode="r").shape
    print(f"embedded {shape[0]} sequences (width {shape[1]}) into {workdir}: "
          + ", ".join(p.name for p in paths.values()))
    return paths


def pretraining_objective(ckpt, model) -> str:
    """The ``objective`` of a ``dna_pretrain`` run, else "mlm" for non-causal and "clm" for causal models."""
    config = Path(ckpt) / "config.json"
    if config.is_file():
        objective = json.loads(config.read_text()).get("objective")
        if objective in ("mlm", "clm"):
            return objective
    return "clm" if model.config.causal else "mlm"


def dna_variants(c: ml_collections.ConfigDict, workdir: str) -> np.ndarray:
    """Log-likelihood ratio (alt vs ref) of every variant of ``c.variants`` in a ``c.window`` bp window of
    ``c.genome``; writes ``workdir/scores.tsv`` (the input columns plus ``llr``) and returns the scores.
    With a 0/1 ``label`` column it also prints the ROC-AUC of ``-llr`` for label 1."""
    from bioxlstm_jax.data.dna import Genome
    from bioxlstm_jax.evaluation.metrics import roc_auc
    from bioxlstm_jax.inference.dna import read_variants, variant_scores

    require(c, "ckpt", "genome", "variants")
    require_positive(c, "window", "batch_size")
    if c.objective not in ("auto", "mlm", "clm"):
        raise ValueError(f"--config.objective must be auto, mlm or clm, got {c.objective!r}")
    rows = read_variants(c.variants)
    model, params = load_model(c, vocab_size=len(VOCAB), domain="DNA")
    obj = pretraining_objective(c.ckpt, model) if c.objective == "auto" else c.objective
    scores = variant_scores(model, params, Genome(c.genome, c.tfds_dir), rows, window=c.window, objective=obj,
                            batch_size=c.batch_size)
    extra = list(rows[0].fields)
    lines = ["\t".join(["chrom", "pos", "ref", "alt", *extra, "llr"])]
    lines += ["\t".join([v.chrom, str(v.pos), v.ref, v.alt, *(v.fields[k] for k in extra), f"{s:.6g}"])
              for v, s in zip(rows, scores)]
    out = atomic_write(Path(workdir) / "scores.tsv", "\n".join(lines) + "\n")
    print(f"{len(rows)} variants scored ({obj}, window {c.window} bp): llr mean {scores.mean():.4f}, "
          f"median {np.median(scores):.4f}, {np.mean(scores < 0):.1%} negative -> {out}")
    if "label" in extra:
        labels = [int(v.fields["label"]) for v in rows]
        if len(set(labels)) == 2:
            print(f"ROC-AUC of -llr for label 1: {roc_auc(-scores, labels):.4f}")
    return scores
