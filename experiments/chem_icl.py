"""Chem-xLSTM in-context conditional generation (ICST): train on molecular domains, then generate and
rank molecules of unseen domains from a few of their molecules.

    python -m experiments.chem_icl [--workdir runs/chem_icl] [--config.key=value ...]

Data: one domain per line, its molecules joined by ``.`` (Chem-xLSTM's ICST format). With no flags:
the 50 ICST validation domains shipped in ``bioxlstm_jax/assets/chem`` (the ICST train split is not
available offline), the first 40 for training and the last 10 held out; a small model (d 128,
2 mLSTM blocks, chunkwise), context 512, 300 steps of 8 rows; about ten minutes on a 2-core CPU.
A training row is a domain with its molecules shuffled (permutation augmentation), as
``[BEG] m1.m2...[END]`` cut to its last ``context_length`` tokens (as the reference). The vocabulary is
learned from all the domains given (so held-out contexts can be encoded) and saved as ``vocab.json``.

After training, per held-out domain (``icl_results.json`` in the workdir, and a table):
* generation: context = its first ``n_context`` molecules joined by ``.`` plus ``.``; ``n_designs``
  samples keep up to 3 molecules each after the context (the reference's protocol); reported:
  validity, FCD to the domain's other molecules, novelty relative to the whole domain;
* ranking (few-shot): with the same context, ``n_rank`` other molecules of the domain (positives)
  and as many from the other held-out domains (negatives) are scored by mean log-likelihood; ROC-AUC.
  (The reference ranks FS-Mol assay actives this way; FS-Mol is not available offline.)

The reference ICST run (chunkwise, as ``config.model.form``): ``--config.preset=chem_xlstm_15m
--config.context_length=2048 --config.batch_size=32 --config.optimizer.lr=1e-3
--config.optimizer.warmup_steps=400 --config.domains=<train+valid domains file>``.
"""

from __future__ import annotations

import ml_collections
from ml_collections.config_dict import placeholder

from bioxlstm_jax.jobs import chem_icl, model_flags, run
from bioxlstm_jax.training import base_config


def get_config() -> ml_collections.ConfigDict:
    c = base_config()
    c.preset = "chem_small"  # chem_small (d 128 x 2 blocks) | chem_xlstm_15m
    c.model = model_flags(form="chunkwise", chunk_size=64)  # XLSTMConfig fields over the preset
    c.domains = placeholder(str)  # file of domains, one per line (unset: the shipped ICST validation domains)
    c.heldout = 10  # the last `heldout` domains are held out
    c.tokenizer = "bioxlstm"
    c.context_length = 512
    c.steps = 300
    c.batch_size = 8
    c.eval_batch_size = 8
    c.eval_every = 100
    c.eval_steps = 1  # eval batches: held-out domains in turn, each with its own permutation
    c.log_every = 20
    c.checkpoint_every = 100
    c.optimizer = ml_collections.ConfigDict(dict(
        name="adamw", lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, weight_decay_exclude="", clip_norm=1.0,
        schedule="cosine", warmup_steps=30, warmup_init_lr=0.0, min_lr=0.0))
    c.n_context = 6  # context molecules per held-out domain
    c.n_designs = 16  # samples per held-out domain (up to 3 molecules kept from each)
    c.n_rank = 20  # positives (and negatives) ranked per held-out domain
    c.eval_seed = 0
    return c


if __name__ == "__main__":
    run(chem_icl, get_config, "runs/chem_icl")
