"""Prot-xLSTM homology-aware pretraining (the README's main job).

    python -m experiments.prot_pretrain [--workdir runs/prot_pretrain] [--config.key=value ...]

With no flags: a small Prot-xLSTM (d 128, 2 mLSTM blocks) on the twelve real homolog clusters shipped
in ``bioxlstm_jax/assets/protein/clusters`` (ten train, two held out), context 2048, 200 steps of 8
rows; a few minutes on a 2-core CPU. Writes ``config.json``, ``model.json``, ``metrics.jsonl``,
``curves.png``, ``tensorboard/``, ``checkpoints/`` and ``best/`` to the workdir; re-running resumes.
Eval: perplexity on the held-out clusters overall (``eval/perplexity``), on FIM tokens
(``eval/fim/perplexity``) and on the last complete protein of each row (``eval/last_seq/perplexity``).

The real run (the reference's settings):

    python -m experiments.prot_pretrain --workdir runs/prot_26m --config.preset=prot_xlstm_26m \
      --config.data_dir=<OpenProteinSet root: <id>/a3m/uniclust30.a3m> \
      --config.train_split=cluster_training_set.txt --config.eval_split=cluster_validation_set.txt \
      --config.context_length=131072 --config.batch_size=<devices> --config.steps=<...> \
      --config.optimizer.warmup_steps=500 --config.eval_every=50 --config.checkpoint_every=50

(AdamW 6e-4, betas (0.9, 0.95), weight decay 0.1 on all parameters, clip 1.0, constant after 500
warmup steps are the defaults.)
"""

from __future__ import annotations

import sys

import ml_collections

from bioxlstm_jax import presets
from bioxlstm_jax.assets import asset_path
from bioxlstm_jax.data import lm_batches
from bioxlstm_jax.data.protein import PAD, fim_token_mask, homolog_example, last_sequence_target_mask
from bioxlstm_jax.data.tfds_builders import homolog_clusters
from bioxlstm_jax.nn import XLSTMLM
from bioxlstm_jax.training import base_config, causal_lm_task
from bioxlstm_jax.training.cli import run


def get_config() -> ml_collections.ConfigDict:
    c = base_config()
    c.preset = ""  # "" = the small model of `small_model`; prot_xlstm_26m | prot_xlstm_102m
    c.small_model = ml_collections.ConfigDict(dict(embedding_dim=128, num_blocks=2))
    c.chunk_size = 64  # mLSTM chunk (0 = the preset's)
    c.backend = "chunkwise"
    c.dtype = "float32"  # compute dtype (bfloat16 on GPU)
    c.remat = "none"  # none | block | block_save_dots (XLSTMConfig.remat; block for long contexts)
    c.data_dir = ""  # "" = the shipped clusters; else an OpenProteinSet tree or a folder of MSA files
    c.train_split = ""  # split file of cluster ids ("" = every cluster not in eval_split)
    c.eval_split = ""  # "" with the shipped data = its eval_clusters.txt
    c.tfds_dir = ""  # where the prepared TFDS dataset goes ("": tfds_builders.default_data_dir)
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


def model_config(c):
    changes = dict(context_length=c.context_length, backend=c.backend, dtype=c.dtype, remat=c.remat)
    if c.chunk_size:
        changes["chunk_size"] = c.chunk_size
    if not c.preset:
        changes.update(c.small_model.to_dict())
    return presets.get(c.preset or "prot_xlstm_26m", **changes)


def build_task(c):
    if c.data_dir:
        root, eval_split = c.data_dir, c.eval_split or None
    else:
        root = asset_path("protein", "clusters")
        eval_split = c.eval_split or str(asset_path("protein", "eval_clusters.txt"))
    if eval_split is None:
        raise ValueError("--config.eval_split is required with --config.data_dir (a file of held-out cluster ids)")
    sources = homolog_clusters(root, {"train": c.train_split or None, "eval": eval_split}, c.tfds_dir)

    def transform(record, rng):
        proteins = record["proteins"]
        proteins = (proteins.decode() if isinstance(proteins, bytes) else proteins).split("\n")
        return homolog_example(proteins, rng, max_len=c.context_length, fim=c.fim, max_spans=c.fim_max_spans,
                               mask_fraction=c.fim_mask_fraction, always_mask=c.fim_always_mask,
                               sample_proteins=c.sample_proteins, max_position=c.max_position,
                               fim_only_loss=c.fim_only_loss)

    def batches(split, seed, shuffle):
        def data(b, i, n):
            return lm_batches(sources[split], batch_size=b, seq_len=c.context_length, seed=seed, transform=transform,
                              shard_index=i, shard_count=n, shuffle=shuffle, pack=c.pack, pad_id=PAD)
        return data

    def subsets(batch):
        tokens = batch["tokens"]
        return {"fim": fim_token_mask(tokens)[:, 1:], "last_seq": last_sequence_target_mask(tokens)}

    # eval: the same FIM draws at every evaluation (fixed seed, no shuffle)
    return causal_lm_task(XLSTMLM(model_config(c)), batches("train", c.seed, True), batches("eval", 1234, False),
                          subsets=subsets)


if __name__ == "__main__":
    sys.exit(run(get_config, build_task, "runs/prot_pretrain"))
