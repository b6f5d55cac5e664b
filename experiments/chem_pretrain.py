"""Chem-xLSTM: a causal language model of SMILES.

    python -m experiments.chem_pretrain [--workdir runs/chem_pretrain] [--config.key=value ...]

With no flags: a small Chem-xLSTM (d 128, 2 mLSTM blocks) on the ChEMBL v31 ``mini_train`` set (50,000
SMILES, shipped in ``bioxlstm_jax/assets/chem``), context 100, 600 steps of 64 molecules; a few
minutes on a 2-core CPU. The vocabulary is learned from the training file in first-appearance order
(as Chem-xLSTM) and written to ``vocab.json`` with the run; beside it ``config.json``, ``model.json``,
``metrics.jsonl``, ``curves.png``, ``tensorboard/``, ``checkpoints/`` and ``best/`` (re-running resumes).
Eval: perplexity on the validation and test molecules (``eval/valid/perplexity``,
``eval/test/perplexity``; by default the first 5,000 of each shipped split).

The paper's 14.8M model with the reference optimiser (Adam 5e-3, no weight decay, clip 1.0, 4000
warmup steps then a cosine decay to 0, batch 1024, context 100):

    python -m experiments.chem_pretrain --workdir runs/chem_15m --config.preset=chem_xlstm_15m \\
      --config.train=<train SMILES file> --config.valid=<valid> --config.test=<test> \\
      --config.batch_size=1024 --config.steps=<...> --config.optimizer.warmup_steps=4000 \\
      --config.optimizer.lr=5e-3

SMILES files: .txt / .smi (one per line), .csv / .tsv (a ``SMILES`` column), gzip or zip.
"""

from __future__ import annotations

import json
import sys

import ml_collections
import numpy as np

from bioxlstm_jax import presets
from bioxlstm_jax.assets import asset_path
from bioxlstm_jax.data import lm_batches
from bioxlstm_jax.data.smiles import SmilesVocab
from bioxlstm_jax.data.tfds_builders import sequence_records
from bioxlstm_jax.nn import XLSTMLM
from bioxlstm_jax.training import base_config, causal_lm_task
from bioxlstm_jax.training.cli import run

EVAL_SPLITS = ("valid", "test")


def get_config() -> ml_collections.ConfigDict:
    c = base_config()
    c.preset = ""  # "" = the small model of `small_model`; chem_xlstm_15m
    c.small_model = ml_collections.ConfigDict(dict(embedding_dim=128, num_blocks=2, mlstm_num_heads=4))
    c.backend = ""  # "" = the preset's (parallel); chunkwise
    c.dtype = "float32"  # compute dtype (bfloat16 on GPU)
    c.train = ""  # SMILES file ("" = the shipped ChEMBL mini_train)
    c.valid = ""  # "" = the shipped first 5,000 ChEMBL valid molecules
    c.test = ""  # "" = the shipped first 5,000 ChEMBL test molecules
    c.tokenizer = "bioxlstm"  # or "reference" (Chem-xLSTM's regex; refuses what it would drop)
    c.tfds_dir = ""  # where the prepared TFDS dataset goes ("": tfds_builders.default_data_dir)
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


def data_files(c) -> dict[str, str]:
    shipped = {"train": "chembl_mini_train.txt.gz", "valid": "chembl_valid_5k.txt.gz", "test": "chembl_test_5k.txt.gz"}
    return {split: getattr(c, split) or str(asset_path("chem", name)) for split, name in shipped.items()}


def model_config(c, vocab_size: int):
    preset = presets.get(c.preset or "chem_xlstm_15m")
    changes = dict(context_length=c.context_length, dtype=c.dtype,
                   vocab_size=max(vocab_size, preset.vocab_size) if c.preset else vocab_size)
    if c.backend:
        changes["backend"] = c.backend
    if not c.preset:
        changes.update(c.small_model.to_dict())
    return presets.get(c.preset or "chem_xlstm_15m", **changes)


class _Interleaved:
    """Random access to several sources, alternating between them (so any prefix holds all of them)."""

    def __init__(self, sources):
        self.sources = sources
        n = min(len(s) for s in sources)
        self.order = [(k, i) for i in range(n) for k in range(len(sources))]
        self.order += [(k, i) for k, s in enumerate(sources) for i in range(n, len(s))]

    def __len__(self):
        return len(self.order)

    def __getitem__(self, j):
        k, i = self.order[j]
        return k, self.sources[k][i]


def build_task(c):
    files = data_files(c)
    vocab = SmilesVocab.learn_file(files["train"], c.tokenizer)
    sources = sequence_records({split: [path] for split, path in files.items()}, c.tfds_dir, reader="smiles")
    L = c.context_length

    def encode(record):
        smiles = record["sequence"]
        smiles = smiles.decode() if isinstance(smiles, bytes) else smiles
        return np.asarray(vocab.encode(smiles)[-L:], np.int32)  # keep the end, as Chem-xLSTM truncates

    def train_data(b, i, n):
        return lm_batches(sources["train"], batch_size=b, seq_len=L, seed=c.seed,
                          transform=lambda r, rng: {"tokens": encode(r)}, shard_index=i, shard_count=n,
                          pack=False, pad_id=vocab.pad_id)

    def eval_transform(item, rng):
        k, record = item
        tokens = encode(record)
        return {"tokens": tokens, "split": np.full(len(tokens), k + 1, np.int32)}

    def eval_data(b, i, n):
        source = _Interleaved([sources[s] for s in EVAL_SPLITS])
        return lm_batches(source, batch_size=b, seq_len=L, seed=0, transform=eval_transform, shard_index=i,
                          shard_count=n, shuffle=False, num_epochs=1, pack=False, pad_id=vocab.pad_id)

    def subsets(batch):
        return {name: batch["split"][:, 1:] == k + 1 for k, name in enumerate(EVAL_SPLITS)} if "split" in batch else {}

    model = XLSTMLM(model_config(c, len(vocab)))
    return causal_lm_task(model, train_data, eval_data, subsets=subsets,
                          files={"vocab.json": json.dumps(vocab.to_json(), indent=1)})


if __name__ == "__main__":
    sys.exit(run(get_config, build_task, "runs/chem_pretrain"))
