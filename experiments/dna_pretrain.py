"""DNA-xLSTM pretraining on a genome FASTA: masked (MLM) or causal (CLM) language modelling.

    python -m experiments.dna_pretrain [--workdir runs/dna_pretrain] [--config.key=value ...]

With no flags: a small DNA-xLSTM (d 64, 2 mLSTM blocks, chunk 64, per-head RoPE, bidirectional "sum", RC
augmentation) learns MLM on the shipped hg38 chr2:1-2,333,275 (soft-masked, read upper-cased), windows
of 1,024 bp (the last 5 % of the windows are the validation split), in a few minutes on a 2-core CPU.
The run directory holds ``config.json``, ``model.json``, ``metrics.jsonl``, ``curves.png``,
``tensorboard/``, ``checkpoints/`` and ``best/``; re-running resumes. ``eval/loss`` is the
cross-entropy over the masked (MLM) or next (CLM) bases of the validation windows.

Options:
  --config.objective=mlm|clm      MLM: 15 % masked, 80/10/10 (``data.dna.mlm_mask``); CLM: next base.
  --config.preset=dna_xlstm_500k|dna_xlstm_2m|dna_xlstm_4m   a paper model instead of the small one.
  --config.rc=aug|ps|none         RC augmentation (p 0.5), RC parameter sharing (RCPS; MLM only), none.
  --config.bidirectional=sum|alternating|native|none   ("" = sum for MLM, none for CLM; native uses
                                  the parallel mLSTM: memory quadratic in context).
  --config.fasta=<genome.fa[.gz]> [--config.bed=<bed with chrom,start,end,split>]   the real run.
  --config.context_length=1024    window length in bp.

The reference optimiser is the default: AdamW (betas 0.9 / 0.95, weight decay 0.1 except biases and
the embedding), peak lr 8e-3 reached by linear warmup from 1e-6 over 10 % of the steps, then cosine
to 1e-4, clip 1.0. DNA-xLSTM's 32k-context run:

    python -m experiments.dna_pretrain --workdir runs/dna_4m_32k --config.preset=dna_xlstm_4m \\
      --config.fasta=hg38.ml.fa --config.bed=human-sequences.bed --config.context_length=32768 \\
      --config.batch_size=32 --config.steps=10000 --config.optimizer.warmup_steps=1000 --config.dtype=bfloat16

(the chunkwise mLSTM keeps memory linear in the context; ``benchmarks/dna_context.py`` measures it).
"""

from __future__ import annotations

import sys

import ml_collections

from bioxlstm_jax import presets
from bioxlstm_jax.assets import asset_path
from bioxlstm_jax.data import lm_batches
from bioxlstm_jax.data.dna import OBJECTIVES, PAD, genome_windows, lm_example
from bioxlstm_jax.nn import XLSTMLM
from bioxlstm_jax.training import base_config, causal_lm_task, masked_lm_task
from bioxlstm_jax.training.cli import run

RC_MODES = ("aug", "ps", "none")


def get_config() -> ml_collections.ConfigDict:
    c = base_config()
    c.objective = "mlm"
    c.preset = ""  # "" = the small model of `small_model`; dna_xlstm_500k, dna_xlstm_2m, dna_xlstm_4m
    c.small_model = ml_collections.ConfigDict(dict(embedding_dim=64, num_blocks=2, slstm_at=(), mlstm_num_heads=4,
                                                    chunk_size=64))
    c.rc = "aug"
    c.bidirectional = ""  # "" = "sum" for MLM (DNA-xLSTM's pretraining script), "none" for CLM
    c.backend = ""  # "" = the preset's (chunkwise); parallel
    c.dtype = "float32"  # compute dtype (bfloat16 on GPU)
    c.fasta = ""  # "" = the shipped hg38 chr2 fragment
    c.bed = ""  # optional BED (chrom, start, end, split): DNA-xLSTM's windows and splits
    c.valid_fraction = 0.05  # without a BED: the last windows of each chromosome held out
    c.tfds_dir = ""  # where the prepared genome goes ("": tfds_builders.default_data_dir)
    c.context_length = 1024  # bp per window
    c.mlm_probability = 0.15
    c.steps = 300
    c.batch_size = 8
    c.eval_batch_size = 16
    c.eval_every = 100
    c.eval_steps = 7  # 7 x 16 = 112 of the 114 shipped validation windows
    c.log_every = 10
    c.checkpoint_every = 100
    c.optimizer = ml_collections.ConfigDict(dict(
        name="adamw", lr=8e-3, b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1, weight_decay_exclude="bias|embedding",
        clip_norm=1.0, schedule="cosine", warmup_steps=30, warmup_init_lr=1e-6, min_lr=1e-4))
    return c


def model_config(c):
    """The ``XLSTMConfig`` of the run (checks the objective / RC / direction combination)."""
    if c.objective not in OBJECTIVES:
        raise ValueError(f"config.objective must be one of {OBJECTIVES}, got {c.objective!r}")
    if c.rc not in RC_MODES:
        raise ValueError(f"config.rc must be one of {RC_MODES}, got {c.rc!r}")
    bidirectional = c.bidirectional or ("sum" if c.objective == "mlm" else "none")
    if c.objective == "clm" and (bidirectional != "none" or c.rc == "ps"):
        raise ValueError("a causal LM (objective=clm) must be causal: bidirectional=none and rc=aug or none "
                         "(RCPS reads the reverse strand, i.e. the future)")
    changes = dict(context_length=c.context_length + (c.objective == "clm"), dtype=c.dtype,
                   bidirectional=bidirectional, rcps=c.rc == "ps")
    if c.backend or bidirectional == "native":
        changes["backend"] = c.backend or "parallel"
    if not c.preset:
        changes.update(c.small_model.to_dict())
    return presets.get(c.preset or "dna_xlstm_4m", **changes)


def build_task(c):
    cfg = model_config(c)
    windows = genome_windows(c.fasta or asset_path("dna", "hg38_chr2_1-2333275.fa.gz"), c.context_length,
                             bed=c.bed or None, valid_fraction=c.valid_fraction, data_dir=c.tfds_dir)
    if "train" not in windows:
        raise ValueError(f"{c.bed}: no 'train' rows (splits: {sorted(windows)})")
    valid = windows.get("valid") or windows.get("test")
    seq_len = cfg.context_length

    def transform(rc_aug):
        return lambda r, rng: lm_example(r["sequence"], rng, objective=c.objective, rc_aug=rc_aug,
                                         mlm_probability=c.mlm_probability)

    def train_data(b, i, n):
        return lm_batches(windows["train"], batch_size=b, seq_len=seq_len, seed=c.seed,
                          transform=transform(c.rc == "aug"), shard_index=i, shard_count=n, pack=False, pad_id=PAD)

    def eval_data(b, i, n):
        return lm_batches(valid, batch_size=b, seq_len=seq_len, seed=0, transform=transform(False), shard_index=i,
                          shard_count=n, shuffle=False, num_epochs=1, pack=False, pad_id=PAD)

    model = XLSTMLM(cfg)
    make = masked_lm_task if c.objective == "mlm" else causal_lm_task
    return make(model, train_data, eval_data if valid is not None else None)


if __name__ == "__main__":
    sys.exit(run(get_config, build_task, "runs/dna_pretrain"))
