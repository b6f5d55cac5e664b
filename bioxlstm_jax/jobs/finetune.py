"""DNA-xLSTM fine-tuning on a sequence-classification table over several seeds (``experiments/dna_finetune.py``).

``dna_finetune(config, workdir)``: per seed, a classifier (the backbone of ``config.ckpt`` or a fresh
model, mean pooling, a linear head) trained with the training loop in ``workdir/seed_<s>``, its best
validation parameters evaluated on the test table; then ``results.json`` (per-seed and mean / min /
max accuracy, MCC, F1) and ``curves.png``. Unlike the reference, the mean pooling excludes the
padding (the reference averages over it too).
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from bioxlstm_jax.data import array_batches
from bioxlstm_jax.data.dna import PAD, encode, rc_augment, read_labeled_sequences
from bioxlstm_jax.evaluation.metrics import classification_metrics, summarize_seeds
from bioxlstm_jax.io import atomic_path, fixed_batches, pad_rows, write_json
from bioxlstm_jax.jobs.cli import model_config, require, require_fraction, require_positive
from bioxlstm_jax.nn import XLSTMClassifier
from bioxlstm_jax.training import classification_task, train
from bioxlstm_jax.training.checkpoints import read_params

__all__ = ["dna_finetune", "finetune_seed", "classifier", "tokenize", "predict", "RC_MODES"]

RC_MODES = ("ph", "ps", "aug", "none")
METRICS = ("accuracy", "mcc", "f1")


def tokenize(sequences, max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """DNA-xLSTM's downstream inputs: ids cut on the right to ``max_length`` and left-padded with
    [PAD]. Returns tokens (N, max_length) int32 and padding_mask (N, max_length) bool (True = base)."""
    tokens = np.full((len(sequences), max_length), PAD, np.int32)
    mask = np.zeros((len(sequences), max_length), bool)
    for i, s in enumerate(sequences):
        ids = encode(s, uppercase=False)[:max_length]
        tokens[i, max_length - len(ids):] = ids
        mask[i, max_length - len(ids):] = True
    return tokens, mask


def classifier(c, ckpt, num_classes: int, length: int):
    """(XLSTMClassifier, pretrained parameters for ``classification_task``: the backbone of ``ckpt``, or None)."""
    if c.rc not in RC_MODES:
        raise ValueError(f"config.rc must be one of {RC_MODES}, got {c.rc!r}")
    if ckpt:
        from bioxlstm_jax.inference import load_lm

        lm, lm_params = load_lm(ckpt)
        cfg = model_config(c, lm.config, context_length=length)
        if cfg.rcps != (c.rc == "ps"):
            raise ValueError(f"{ckpt}: the checkpoint is {'an RCPS' if cfg.rcps else 'not an RCPS'} model; use "
                             f"--config.rc={'ps' if cfg.rcps else 'ph, aug or none'}")
        model = XLSTMClassifier(cfg, num_classes, pooling=c.pooling)
        fresh = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, length), jnp.int32),
                               jnp.ones((1, length), bool))["params"]["backbone"]
        if jax.tree.map(lambda x: x.shape, fresh) != jax.tree.map(lambda x: x.shape, lm_params["backbone"]):
            raise ValueError(f"{ckpt}: the backbone parameters do not fit the model of its config")
        return model, {"backbone": lm_params["backbone"]}
    cfg = model_config(c, c.preset, context_length=length, bidirectional="sum", rcps=c.rc == "ps")
    return XLSTMClassifier(cfg, num_classes, pooling=c.pooling), None


@functools.lru_cache(maxsize=8)
def _jitted_apply(model, conjoin: bool):
    """One compiled forward per (model, conjoin): every split and seed reuse it."""
    return jax.jit(lambda p, t, m: model.apply({"params": p}, t, m, conjoin=conjoin))


def predict(model, params, tokens, mask, *, conjoin: bool, batch_size: int) -> np.ndarray:
    """Class predictions (N,) for tokens / padding_mask (N, L), in batches (the last one padded)."""
    apply = _jitted_apply(model, conjoin)
    out = []
    for b in fixed_batches(len(tokens), batch_size):
        logits = apply(params, pad_rows(tokens[b], batch_size), pad_rows(mask[b], batch_size))
        out.append(np.asarray(jnp.argmax(logits, -1))[:b.stop - b.start])
    return np.concatenate(out)


def _splits(c, seed: int):
    seqs, labels = read_labeled_sequences(c.train, c.task or None)
    if c.valid:
        valid = read_labeled_sequences(c.valid, c.task or None)
        train_ = (seqs, labels)
    else:
        order = np.random.default_rng(seed).permutation(len(seqs))
        n_valid = max(1, int(round(c.valid_fraction * len(seqs))))
        pick = lambda idx: ([seqs[i] for i in idx], labels[idx])  # noqa: E731
        valid, train_ = pick(order[:n_valid]), pick(order[n_valid:])
    return {"train": train_, "valid": valid, "test": read_labeled_sequences(c.test, c.task or None)}


def finetune_seed(c, seed: int, workdir) -> dict:
    """Trains and evaluates one seed in ``workdir/seed_<seed>``; returns its ``{"valid", "test"}`` metrics."""
    ckpt = c.ckpt
    workdir = Path(workdir) / f"seed_{seed}"
    done = workdir / "results.json"
    if done.is_file():
        return json.loads(done.read_text())
    splits = _splits(c, seed)
    seen = set(splits["train"][1].tolist())
    for split in ("valid", "test"):
        unseen = sorted(set(splits[split][1].tolist()) - seen)
        if unseen:
            raise ValueError(f"{c.get(split) or c.train}: labels {unseen} of the {split} rows never occur in the "
                             f"training rows (labels {sorted(seen)})")
    n_classes = int(max(seen) + 1)
    length = c.max_length or max(len(s) for s in splits["train"][0])
    data = {k: tokenize(seqs, length) for k, (seqs, _) in splits.items()}
    model, pretrained = classifier(c, ckpt, n_classes, length)
    complement = model.config.complement_map
    if c.rc in ("ph", "aug") and complement is None:
        raise ValueError("config.rc=ph/aug needs a model with a complement map")

    def rc_aug(row, rng):
        tokens, mask = rc_augment(rng, row["tokens"], row["padding_mask"])
        return {**row, "tokens": tokens, "padding_mask": mask}

    def arrays(split):
        tokens, mask = data[split]
        return {"tokens": tokens, "padding_mask": mask, "labels": splits[split][1]}

    def train_data(b, i, n):
        return array_batches(arrays("train"), batch_size=b, seed=seed, shard_index=i, shard_count=n,
                             transform=rc_aug if c.rc in ("ph", "aug") else None)

    def eval_data(b, i, n):
        return array_batches(arrays("valid"), batch_size=b, shard_index=i, shard_count=n, shuffle=False, num_epochs=1)

    per_epoch = math.ceil(len(data["train"][0]) / c.batch_size)
    tc = ml_collections.ConfigDict(c.to_dict())
    tc.seed = seed
    tc.steps = per_epoch * c.epochs
    tc.eval_every = tc.checkpoint_every = per_epoch
    tc.eval_steps = math.ceil(len(data["valid"][0]) / c.eval_batch_size)
    tc.best_metric, tc.best_mode = ("eval/accuracy", "max") if c.monitor == "accuracy" else ("eval/loss", "min")
    if c.monitor not in ("accuracy", "loss"):
        raise ValueError(f"config.monitor must be 'accuracy' or 'loss', got {c.monitor!r}")
    if c.optimizer.warmup_steps is None:
        tc.optimizer.warmup_steps = max(1, tc.steps // 100)
    if c.optimizer.min_lr is None:
        tc.optimizer.min_lr = 0.1 * c.optimizer.lr
    conjoin = c.rc == "ph"
    task = classification_task(model, train_data, eval_data, conjoin=False, conjoin_eval=conjoin,
                               pretrained=pretrained)
    train(tc, str(workdir), task)
    params = read_params(workdir, "best")
    result = {"seed": seed, "num_classes": n_classes, "max_length": length,
              "sizes": {k: len(v[0]) for k, v in splits.items()}}
    for split in ("valid", "test"):
        preds = predict(model, params, *data[split], conjoin=conjoin, batch_size=c.eval_batch_size)
        result[split] = classification_metrics(splits[split][1], preds, n_classes)
    write_json(done, result)
    return result


def format_table(results: list[dict], summary: dict) -> str:
    """Per-seed rows then mean / min / max over seeds, test and valid accuracy, MCC, F1."""
    head = "| seed | " + " | ".join(f"test {m}" for m in METRICS) + " | " + " | ".join(f"valid {m}" for m in METRICS) + " |"
    lines = [head, "|" + "---|" * (1 + 2 * len(METRICS))]
    for r in results:
        lines.append(f"| {r['seed']} | " + " | ".join(f"{r[s][m]:.4f}" for s in ("test", "valid") for m in METRICS) + " |")
    for stat in ("mean", "min", "max"):
        lines.append(f"| {stat} | " + " | ".join(f"{summary[s][m][stat]:.4f}" for s in ("test", "valid")
                                                   for m in METRICS) + " |")
    return "\n".join(lines)


def plot_curves(workdir, seeds, path) -> None:
    """Validation accuracy and training loss against step, one line per seed."""
    from matplotlib.figure import Figure  # no pyplot: never touches the caller's backend

    fig = Figure(figsize=(9, 3.2))
    axes = fig.subplots(1, 2)
    for seed in seeds:
        rows = [json.loads(x) for x in (Path(workdir) / f"seed_{seed}" / "metrics.jsonl").read_text().splitlines() if x]
        for ax, key in zip(axes, ("eval/accuracy", "train/loss")):
            pts = [(r["step"], r[key]) for r in rows if key in r]
            if pts:
                ax.plot(*zip(*pts), marker="o" if key.startswith("eval") else None, label=f"seed {seed}")
    for ax, title in zip(axes, ("validation accuracy", "training loss")):
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)


def dna_finetune(c: ml_collections.ConfigDict, workdir: str) -> dict:
    """Every seed of ``c.seeds`` (each resumable in ``workdir/seed_<s>``); writes ``workdir/results.json``
    and ``workdir/curves.png``, prints the table and returns the report."""
    require(c, "train", "test")
    require_positive(c, "epochs", "batch_size", "eval_batch_size", "max_length")
    if not c.valid:
        require_fraction(c, "valid_fraction", "(0, 1)")
    seeds = [int(s) for s in c.seeds]
    if not seeds:
        raise ValueError("config.seeds is empty")
    results = [finetune_seed(c, s, workdir) for s in seeds]
    summary = {split: summarize_seeds([r[split] for r in results]) for split in ("valid", "test")}
    report = {"train": str(c.train), "valid": str(c.valid) if c.valid else None, "test": str(c.test),
              "ckpt": str(c.ckpt) if c.ckpt else None, "config": json.loads(c.to_json()), "seeds": results, **summary,
              "table": format_table(results, summary)}
    write_json(Path(workdir) / "results.json", report)
    plot_curves(workdir, seeds, Path(workdir) / "curves.png")
    if jax.process_index() == 0:
        print(report["table"])
        print(f"wrote {Path(workdir) / 'results.json'} and curves.png")
    return report
