"""A tiny causal-LM experiment on real protein sequences, run by the training tests as a command.

    python tests/training/tiny_experiment.py --workdir DIR [--config.key=value ...]
"""

import gzip
import sys
import time
from pathlib import Path

import ml_collections
import numpy as np

from bioxlstm_jax.data import lm_batches
from bioxlstm_jax.jobs import run
from bioxlstm_jax.nn import XLSTMLM, XLSTMConfig
from bioxlstm_jax.training import base_config, causal_lm_task, train

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script: make `tests` importable
from tests.helpers import data_path  # noqa: E402

ALPHABET = "ACDEFGHIKLMNPQRSTVWYXBZUO"


def sequences(n: int) -> list[np.ndarray]:
    """The first n sequences, as ids 1..25 (0 = padding)."""
    lookup = {c: i + 1 for i, c in enumerate(ALPHABET)}
    out, cur = [], []
    with gzip.open(data_path("protein", "uniprot_500.fasta.gz"), "rt") as f:
        for line in f:
            if line.startswith(">"):
                if cur:
                    out.append(np.array([lookup[c] for c in "".join(cur)], np.int32))
                    if len(out) == n:
                        break
                cur = []
            else:
                cur.append(line.strip())
    return out


def get_config():
    c = base_config()
    c.steps, c.batch_size, c.eval_batch_size = 6, 8, 8
    c.log_every, c.eval_every, c.eval_steps, c.checkpoint_every = 1, 3, 1, 2
    c.seq_len = 32
    c.num_sequences = 64
    c.pack = True
    c.max_len = 0  # > 0 cuts each sequence to this many residues (more documents per packed row)
    c.model = ml_collections.ConfigDict(dict(vocab_size=26, embedding_dim=16, num_blocks=1, mlstm_num_heads=2,
                                             chunk_size=8, context_length=32))
    c.optimizer.warmup_steps = 2
    c.seconds_per_batch = 0.0  # > 0 slows the data down, so tests can interrupt a run mid-way
    c.optimizer.lr = 3e-3
    c.progress = False
    return c


def build_task(c):
    seqs = [{"tokens": s[:c.max_len] if c.max_len else s} for s in sequences(c.num_sequences)]
    train_src, eval_src = seqs[: len(seqs) * 3 // 4], seqs[len(seqs) * 3 // 4:]

    def train_data(b, i, n):
        ds = lm_batches(train_src, batch_size=b, seq_len=c.seq_len, seed=c.seed, shard_index=i, shard_count=n,
                        pack=c.pack)
        return ds.map(lambda batch: time.sleep(c.seconds_per_batch) or batch) if c.seconds_per_batch else ds

    return causal_lm_task(
        XLSTMLM(XLSTMConfig(**c.model)), train_data,
        lambda b, i, n: lm_batches(eval_src, batch_size=b, seq_len=c.seq_len, shuffle=False, num_epochs=1,
                                   shard_index=i, shard_count=n))


if __name__ == "__main__":
    sys.exit(run(lambda c, workdir: train(c, workdir, build_task(c)), get_config, "runs/tiny"))
