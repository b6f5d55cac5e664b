"""Prot-xLSTM homology-aware pretraining (the README's main job).

    python -m experiments.prot_pretrain [--workdir runs/prot_pretrain] [--config.key=value ...]

With no flags: a small Prot-xLSTM (d 128, 2 mLSTM blocks) on the twelve real homolog clusters shipped
in ``bioxlstm_jax/assets/protein/clusters`` (ten train, two held out), context 2048, 200 steps of 8
rows; a few minutes on a 2-core CPU. Writes ``config.json``, ``model.json``, ``metrics.jsonl``,
``curves.png``, ``tensorboard/``, ``checkpoints/`` and ``best/`` to the workdir; re-running resumes.
Eval: perplexity on the held-out clusters overall (``eval/perplexity``), on FIM tokens
(``eval/fim/perplexity``) and on the last complete protein of each row (``eval/last_seq/perplexity``).
Measured with the defaults (2-core CPU, 2026-12-03): 7 min 10 s; ``eval/perplexity`` 19.9 / 20.1 /
20.5 / 20.4 and ``eval/fim/perplexity`` 16.2 / 14.0 / 13.2 / 12.7 at steps 50 / 100 / 150 / 200 (20 amino
acids: a uniform guess is 20, so 200 small steps learn the FIM spans from the context, not the family).

The real run (the reference's settings):

    python -m experiments.prot_pretrain --workdir runs/prot_26m --config.preset=prot_xlstm_26m \
      --config.data_dir=<OpenProteinSet root: <id>/a3m/uniclust30.a3m> \
      --config.train_split=cluster_training_set.txt --config.eval_split=cluster_validation_set.txt \
      --config.context_length=131072 --config.batch_size=<devices> --config.steps=<...> \
      --config.optimizer.warmup_steps=500 --config.eval_every=50 --config.checkpoint_every=50

(AdamW 6e-4, betas (0.9, 0.95), weight decay 0.1 on all parameters, clip 1.0, constant after 500
warmup steps are the defaults.) The default ``remat="auto"`` recomputes the blocks at this length
(``--config.model.<field>`` sets any model field). Measured on a 2-core CPU with 23 GiB, no remat flag
(``--config.preset=prot_xlstm_26m --config.context_length=131072 --config.steps=1 --config.batch_size=1
--config.eval_every=0``, 2026-12-07): the plan printed ``remat block (auto)`` and 7.71 GiB per device,
the run took 12 min 10 s with a peak RSS of 10.0 GiB (192 tokens/s).
"""

from __future__ import annotations

import ml_collections
from ml_collections.config_dict import placeholder

from bioxlstm_jax.jobs import model_flags, prot_pretrain, run
from bioxlstm_jax.training import base_config


def get_config() -> ml_collections.ConfigDict:
    c = base_config()
    c.preset = "prot_small"  # prot_small (d 128 x 2 blocks) | prot_xlstm_26m | prot_xlstm_102m
    c.model = model_flags()  # XLSTMConfig fields over the preset: --config.model.remat=block, .dtype=bfloat16, ...
    c.data_dir = placeholder(str)  # unset: the shipped clusters; else an OpenProteinSet tree or a folder of MSA files
    c.train_split = placeholder(str)  # split file of cluster ids (unset: every cluster not in eval_split)
    c.eval_split = placeholder(str)  # file of held-out cluster ids (unset with the shipped data: its eval_clusters.txt)
    c.tfds_dir = placeholder(str)  # where the prepared TFDS dataset goes (unset: $BIOXLSTM_DATA_DIR, else ~/.cache/bioxlstm_jax)
    c.context_length = 2048  # tokens per example (reference: 131072)
    c.max_position = 2048  # position ids are clamped to max_position - 1 (reference: 2048)
    c.fim = True  # multi-span fill-in-the-middle
    c.fim_max_spans = 5
    c.fim_mask_fraction = 0.2
    c.fim_always_mask = False
    c.sample_proteins = False  # True: a random number of the cluster's proteins per example
    c.fim_only_loss = False  # True: loss on FIM tokens and <cls> only
    c.pack = False  # one cluster per row (as the reference); True packs short clusters
    c.steps = 200
    c.batch_size = 8
    c.eval_batch_size = 8
    c.eval_every = 50
    c.eval_steps = 2
    c.log_every = 10
    c.checkpoint_every = 50
    c.optimizer.lr = 2e-3
    c.optimizer.warmup_steps = 30
    return c


if __name__ == "__main__":
    run(prot_pretrain, get_config, "runs/prot_pretrain")
