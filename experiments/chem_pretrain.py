"""Chem-xLSTM: a causal language model of SMILES.

    python -m experiments.chem_pretrain [--workdir runs/chem_pretrain] [--config.key=value ...]

With no flags: a small Chem-xLSTM (d 128, 2 mLSTM blocks) on the ChEMBL v31 ``mini_train`` set (50,000
SMILES, shipped in ``bioxlstm_jax/assets/chem``), context 100, 600 steps of 64 molecules; a few
minutes on a 2-core CPU. The vocabulary is learned from the training file in first-appearance order
(as Chem-xLSTM) and written to ``vocab.json`` with the run; beside it ``config.json``, ``model.json``,
``metrics.jsonl``, ``curves.png``, ``tensorboard/``, ``checkpoints/`` and ``best/`` (re-running resumes).
Eval: perplexity on the validation and test molecules (``eval/valid/perplexity``,
``eval/test/perplexity``; by default the first 5,000 of each shipped split). Measured with the
defaults (2-core CPU): validation perplexity 2.578 at step 200, 2.352 at 400, 2.278 at 600 (test 2.278).

The paper's 14.8M model with the reference optimiser (Adam 5e-3, no weight decay, clip 1.0, 4000
warmup steps then a cosine decay to 0, batch 1024, context 100):

    python -m experiments.chem_pretrain --workdir runs/chem_15m --config.preset=chem_xlstm_15m \\
      --config.train=<train SMILES file> --config.valid=<valid> --config.test=<test> \\
      --config.batch_size=1024 --config.steps=<...> --config.optimizer.warmup_steps=4000 \\
      --config.optimizer.lr=5e-3

SMILES files: .txt / .smi (one per line), .csv / .tsv (a ``SMILES`` column), gzip or zip.
"""

from __future__ import annotations

import ml_collections
from ml_collections.config_dict import placeholder

from bioxlstm_jax.jobs import chem_pretrain, model_flags, run
from bioxlstm_jax.training import base_config


def get_config() -> ml_collections.ConfigDict:
    c = base_config()
    c.preset = "chem_small"  # chem_small (d 128 x 2 blocks) | chem_xlstm_15m
    c.model = model_flags()  # XLSTMConfig fields over the preset: --config.model.form=chunkwise, .dtype=bfloat16, ...
    c.train = placeholder(str)  # SMILES file (unset: the shipped ChEMBL mini_train)
    c.valid = placeholder(str)  # unset: the shipped first 5,000 ChEMBL valid molecules
    c.test = placeholder(str)  # unset: the shipped first 5,000 ChEMBL test molecules
    c.tokenizer = "bioxlstm"  # or "reference" (Chem-xLSTM's regex; refuses what it would drop)
    c.tfds_dir = placeholder(str)  # where the prepared TFDS dataset goes (unset: $BIOXLSTM_DATA_DIR, else ~/.cache/bioxlstm_jax)
    c.context_length = 100  # tokens per molecule, [BEG] and [END] included; longer ones keep their end
    c.steps = 600
    c.batch_size = 64
    c.eval_batch_size = 200
    c.eval_every = 200
    c.eval_steps = 50  # 50 x 200 = all 10,000 shipped eval molecules
    c.log_every = 20
    c.checkpoint_every = 200
    c.best_metric = "eval/valid/loss"
    c.optimizer = ml_collections.ConfigDict(dict(
        name="adamw", lr=5e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, weight_decay_exclude="", clip_norm=1.0,
        schedule="cosine", warmup_steps=60, warmup_init_lr=0.0, min_lr=0.0))
    return c


if __name__ == "__main__":
    run(chem_pretrain, get_config, "runs/chem_pretrain")
