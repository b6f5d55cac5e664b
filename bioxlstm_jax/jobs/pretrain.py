"""Pretraining jobs: Prot-xLSTM (homology-aware FIM), DNA-xLSTM (MLM / CLM on a genome) and Chem-xLSTM
(SMILES LM). Each is ``job(config, workdir)`` over the config of ``experiments/<job>.py``; it builds
the task (model, data, eval subsets) and runs ``training.train``, resuming from ``workdir``.
"""

from __future__ import annotations

import json

import ml_collections
import numpy as np

from bioxlstm_jax.assets import asset_path
from bioxlstm_jax.data import lm_batches
from bioxlstm_jax.jobs.cli import model_changes, model_config, require_fraction, require_positive
from bioxlstm_jax.nn import XLSTMLM, XLSTMConfig
from bioxlstm_jax.training import Task, TrainState, causal_lm_task, masked_lm_task, train

__all__ = ["prot_pretrain", "dna_pretrain", "chem_pretrain", "prot_task", "dna_task", "chem_task",
           "prot_model_config", "dna_model_config", "chem_model_config", "chem_data_files", "DNA_RC_MODES"]

Config = ml_collections.ConfigDict
DNA_RC_MODES = ("aug", "ps", "none")
CHEM_EVAL_SPLITS = ("valid", "test")


# --------------------------------------------------------------------------------------------- protein

def prot_model_config(c: Config) -> XLSTMConfig:
    """The ``XLSTMConfig`` of a Prot-xLSTM run: ``config.preset`` with ``config.model`` on top."""
    return model_config(c, c.preset, context_length=c.context_length)


def prot_task(c: Config) -> Task:
    from bioxlstm_jax.data.protein import PAD, fim_token_mask, homolog_example, last_sequence_target_mask
    from bioxlstm_jax.data.tfds_builders import homolog_clusters

    require_positive(c, "context_length", "max_position", "fim_max_spans")
    require_fraction(c, "fim_mask_fraction", "(0, 1]")
    model = XLSTMLM(prot_model_config(c))  # a bad model setting fails before the data is prepared
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
    return causal_lm_task(model, batches("train", c.seed, True), batches("eval", 1234, False), subsets=subsets)


def prot_pretrain(config: Config, workdir: str) -> TrainState:
    """Prot-xLSTM homology-aware pretraining (``experiments/prot_pretrain.py``)."""
    return train(config, workdir, prot_task(config))


# ------------------------------------------------------------------------------------------------- DNA

def dna_model_config(c: Config) -> XLSTMConfig:
    """The ``XLSTMConfig`` of a DNA run (checks the objective / RC / direction combination)."""
    from bioxlstm_jax.data.dna import OBJECTIVES

    if c.objective not in OBJECTIVES:
        raise ValueError(f"config.objective must be one of {OBJECTIVES}, got {c.objective!r}")
    if c.rc not in DNA_RC_MODES:
        raise ValueError(f"config.rc must be one of {DNA_RC_MODES}, got {c.rc!r}")
    changes = model_changes(c)
    bidirectional = changes.get("bidirectional") or ("sum" if c.objective == "mlm" else "none")
    if "rcps" in changes and changes["rcps"] != (c.rc == "ps"):
        raise ValueError(f"--config.model.rcps={changes['rcps']}: RC parameter sharing is --config.rc=ps "
                         f"(here --config.rc={c.rc})")
    if c.objective == "clm" and (bidirectional != "none" or c.rc == "ps"):
        raise ValueError("a causal LM (objective=clm) must be causal: bidirectional=none and rc=aug or none "
                         "(RCPS reads the reverse strand, i.e. the future)")
    derived = dict(context_length=c.context_length + (c.objective == "clm"), bidirectional=bidirectional,
                   rcps=c.rc == "ps")
    if bidirectional == "native":
        derived["form"] = "parallel"  # the only form of a non-causal mLSTM
    return model_config(c, c.preset, **derived)


def dna_task(c: Config) -> Task:
    from bioxlstm_jax.data.dna import PAD, genome_windows, lm_example

    require_positive(c, "context_length")
    require_fraction(c, "mlm_probability", "(0, 1)")
    require_fraction(c, "valid_fraction", "[0, 1)")
    if c.bed and 2**20 % c.context_length:
        raise ValueError(f"--config.context_length={c.context_length}: with --config.bed every row is stretched to "
                         "2^20 bp and cut into windows, so the context length must divide 1,048,576 (a power of two)")
    cfg = dna_model_config(c)
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

    make = masked_lm_task if c.objective == "mlm" else causal_lm_task
    return make(XLSTMLM(cfg), train_data, eval_data if valid is not None else None)


def dna_pretrain(config: Config, workdir: str) -> TrainState:
    """DNA-xLSTM pretraining, masked or causal (``experiments/dna_pretrain.py``)."""
    return train(config, workdir, dna_task(config))


# -------------------------------------------------------------------------------------------- chemistry

def chem_data_files(c: Config) -> dict[str, str]:
    """``{"train", "valid", "test"}`` SMILES files: the config's, else the shipped ChEMBL ones."""
    shipped = {"train": "chembl_mini_train.txt.gz", "valid": "chembl_valid_5k.txt.gz", "test": "chembl_test_5k.txt.gz"}
    return {split: c.get(split) or str(asset_path("chem", name)) for split, name in shipped.items()}


def chem_model_config(c: Config, vocab_size: int) -> XLSTMConfig:
    """The ``XLSTMConfig`` of a Chem-xLSTM run: ``config.preset`` with the learned vocabulary's size and
    ``config.model`` on top (``--config.model.vocab_size`` may only make room for more tokens)."""
    vocab = model_changes(c).get("vocab_size", vocab_size)
    if vocab < vocab_size:
        raise ValueError(f"--config.model.vocab_size={vocab}: the vocabulary learned from the training file has "
                         f"{vocab_size} tokens")
    return model_config(c, c.preset, context_length=c.context_length, vocab_size=vocab_size)


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


def chem_task(c: Config) -> Task:
    from bioxlstm_jax.data.smiles import SmilesVocab, read_smiles
    from bioxlstm_jax.data.tfds_builders import sequence_records

    require_positive(c, "context_length")
    files = chem_data_files(c)
    vocab = SmilesVocab.learn_file(files["train"], c.tokenizer)
    for split in CHEM_EVAL_SPLITS:  # every evaluation molecule must be readable before training starts
        for where, smiles in read_smiles(files[split]):
            try:
                vocab.encode(smiles)
            except ValueError as e:
                raise ValueError(f"{where}: {e} learned from the training file {files['train']}") from None
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
        source = _Interleaved([sources[s] for s in CHEM_EVAL_SPLITS])
        return lm_batches(source, batch_size=b, seq_len=L, seed=0, transform=eval_transform, shard_index=i,
                          shard_count=n, shuffle=False, num_epochs=1, pack=False, pad_id=vocab.pad_id)

    def subsets(batch):
        if "split" not in batch:
            return {}
        return {name: batch["split"][:, 1:] == k + 1 for k, name in enumerate(CHEM_EVAL_SPLITS)}

    model = XLSTMLM(chem_model_config(c, len(vocab)))
    return causal_lm_task(model, train_data, eval_data, subsets=subsets,
                          files={"vocab.json": json.dumps(vocab.to_json(), indent=1)})


def chem_pretrain(config: Config, workdir: str) -> TrainState:
    """Chem-xLSTM SMILES language modelling (``experiments/chem_pretrain.py``)."""
    return train(config, workdir, chem_task(config))
