"""DNA-xLSTM fine-tuning on a sequence-classification task, over several seeds.

    python -m experiments.dna_finetune --config.train=train.csv [--config.valid=dev.csv] --config.test=test.csv \\
        [--config.ckpt=runs/dna_pretrain] [--workdir runs/dna_finetune] [--config.key=value ...]

Tables: GUE (``sequence,label`` CSV), Genomic Benchmarks (``seq<TAB>label``) or Nucleotide Transformer
(``sequence,name,label,task``; pick one with ``--config.task``), gzip transparent. Without ``config.valid``
a random ``config.valid_fraction`` (10 %) of the train file, drawn with each run's seed, is the
validation split (as DNA-xLSTM does for Genomic Benchmarks and NT).

Model: the backbone of ``config.ckpt`` (a ``dna_pretrain`` workdir or a converted DNA-xLSTM checkpoint;
its LM head is dropped) or, without it, a fresh ``config.preset`` (default ``dna_small``), with
``--config.model.<field>`` changing any ``XLSTMConfig`` field of either (e.g. ``remat``, ``kernel``,
``dtype``; a field the checkpoint's parameters do not fit is refused); then mean pooling over the real bases and a linear head (``XLSTMClassifier``).
Sequences are tokenized as DNA-xLSTM's downstream tokenizer does (lower case becomes [UNK]), cut on
the right to ``config.max_length`` (unset: the longest train sequence) and left-padded with [PAD].
Unlike the reference, the mean excludes the padding (the reference averages over it too).

``config.rc``: ``ph`` (default: RC augmentation in training, logits of both strands averaged at
evaluation, DNA-xLSTM's post-hoc conjoining), ``ps`` (an RCPS model: equivariant backbone, both
strands pooled), ``aug`` (augmentation only) or ``none``.

Each seed trains ``config.epochs`` epochs with AdamW (betas 0.9 / 0.999, weight decay 0.1), warmup
over 1 % of the steps then cosine to 0.1 x lr, clip 1.0, evaluating every epoch; the parameters
with the best validation ``config.monitor`` are evaluated on the test file (with
``config.patience`` > 0, training stops after that many epochs without improvement). Output in
the workdir: ``seed_<s>/`` (a training workdir each; re-running resumes), ``results.json`` (per-seed
valid and test accuracy / MCC / F1 and their mean, min, max over seeds) and ``curves.png``.
"""

from __future__ import annotations

import ml_collections
from ml_collections.config_dict import placeholder

from bioxlstm_jax.jobs import dna_finetune, model_flags, run
from bioxlstm_jax.training import base_config


def get_config() -> ml_collections.ConfigDict:
    c = base_config()
    for key in ("steps", "eval_every", "eval_steps", "checkpoint_every", "best_metric", "best_mode"):
        del c[key]  # set per seed from epochs, the data and config.monitor
    c.train = placeholder(str)  # training table (required)
    c.valid = placeholder(str)  # validation table (unset: split off the train table)
    c.test = placeholder(str)  # test table (required)
    c.ckpt = placeholder(str)  # pretrained workdir or converted checkpoint (unset: a fresh model)
    c.seeds = (1, 2, 3)
    c.epochs = 3
    c.batch_size = 32
    c.eval_batch_size = 64
    c.rc = "ph"
    c.pooling = "mean"
    c.max_length = placeholder(int)  # bases per sequence (unset: the longest train sequence)
    c.task = placeholder(str)  # the task of a Nucleotide Transformer table
    c.valid_fraction = 0.1  # split off the train table when config.valid is unset
    c.preset = "dna_small"  # the model without ckpt: dna_small | dna_xlstm_500k | dna_xlstm_2m | dna_xlstm_4m
    # XLSTMConfig fields over the preset or the checkpoint's config (model.bidirectional unset: "sum" from
    # scratch, the checkpoint's own with ckpt)
    c.model = model_flags()
    c.monitor = "accuracy"  # validation metric choosing the checkpoint: accuracy or loss
    c.log_every = 20
    c.progress = True
    c.optimizer = ml_collections.ConfigDict(dict(
        name="adamw", lr=2e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.1, weight_decay_exclude="bias|embedding",
        clip_norm=1.0, schedule="cosine", warmup_steps=placeholder(int), warmup_init_lr=1e-6,
        min_lr=placeholder(float)))  # unset: 1 % of the steps, 0.1 x lr
    return c


if __name__ == "__main__":
    run(dna_finetune, get_config, "runs/dna_finetune")
