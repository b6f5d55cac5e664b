"""DNA-xLSTM fine-tuning on a sequence-classification task, over several seeds.

    python -m experiments.dna_finetune --train train.csv [--valid dev.csv] --test test.csv \\
        [--ckpt runs/dna_pretrain] [--out runs/dna_finetune] [--config.key=value ...]

Tables: GUE (``sequence,label`` CSV), Genomic Benchmarks (``seq<TAB>label``) or Nucleotide Transformer
(``sequence,name,label,task``; pick one with ``--config.task``), gzip transparent. Without ``--valid``
a random ``config.valid_fraction`` (10 %) of the train file, drawn with each run's seed, is the
validation split (as DNA-xLSTM does for Genomic Benchmarks and NT).

Model: the backbone of ``--ckpt`` (a ``dna_pretrain`` workdir or a converted DNA-xLSTM checkpoint;
its LM head is dropped) or, without it, a fresh small model (``config.small_model``) or
``config.preset``; then mean pooling over the real bases and a linear head (``XLSTMClassifier``).
Sequences are tokenized as DNA-xLSTM's downstream tokenizer does (lower case becomes [UNK]), cut on
the right to ``config.max_length`` (0 = the longest train sequence) and left-padded with [PAD].
Unlike the reference, the mean excludes the padding (the reference averages over it too).

``config.rc``: ``ph`` (default: RC augmentation in training, logits of both strands averaged at
evaluation, DNA-xLSTM's post-hoc conjoining), ``ps`` (an RCPS model: equivariant backbone, both
strands pooled), ``aug`` (augmentation only) or ``none``.

Each seed trains ``config.epochs`` epochs with AdamW (betas 0.9 / 0.999, weight decay 0.1), warmup
over 1 % of the steps then cosine to 0.1 x lr, clip 1.0, evaluating every epoch; the parameters
with the best validation ``config.monitor`` are evaluated on the test file (with
``config.patience`` > 0, training stops after that many epochs without improvement). Output in
``--out``: ``seed_<s>/`` (a training workdir each; re-running resumes), ``results.json`` (per-seed
valid and test accuracy / MCC / F1 and their mean, min, max over seeds) and ``curves.png``.
"""

from __future__ import annotations

import functools
import json
import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from bioxlstm_jax import presets
from bioxlstm_jax.data import array_batches
from bioxlstm_jax.data.dna import PAD, encode, read_labeled_sequences, reverse_complement
from bioxlstm_jax.evaluation.dna import classification_metrics, summarize_seeds
from bioxlstm_jax.nn import XLSTMClassifier
from bioxlstm_jax.training import base_config, classification_task, train

RC_MODES = ("ph", "ps", "aug", "none")
METRICS = ("accuracy", "mcc", "f1")


def get_config() -> ml_collections.ConfigDict:
    c = base_config()
    c.seeds = (1, 2, 3)
    c.epochs = 3
    c.batch_size = 32
    c.eval_batch_size = 64
    c.rc = "ph"
    c.pooling = "mean"
    c.max_length = 0  # bases per sequence (0 = the longest train sequence)
    c.task = ""  # the task of a Nucleotide Transformer table
    c.valid_fraction = 0.1  # split off the train file when --valid is not given
    c.preset = ""  # from scratch without --ckpt: "" = small_model; dna_xlstm_500k, dna_xlstm_2m, dna_xlstm_4m
    c.small_model = ml_collections.ConfigDict(dict(embedding_dim=64, num_blocks=2, slstm_at=(), mlstm_num_heads=4,
                                                   chunk_size=64))
    c.bidirectional = "sum"  # from scratch only (a checkpoint keeps its own)
    c.dtype = "float32"
    c.monitor = "accuracy"  # validation metric choosing the checkpoint: accuracy or loss
    c.log_every = 20
    c.progress = True
    c.optimizer = ml_collections.ConfigDict(dict(
        name="adamw", lr=2e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.1, weight_decay_exclude="bias|embedding",
        clip_norm=1.0, schedule="cosine", warmup_steps=-1, warmup_init_lr=1e-6, min_lr=-1.0))  # -1: 1 %, 0.1 x lr
    return c


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


def _model(c, ckpt, num_classes: int, length: int):
    """(XLSTMClassifier, init_params hook or None)."""
    if c.rc not in RC_MODES:
        raise ValueError(f"config.rc must be one of {RC_MODES}, got {c.rc!r}")
    if ckpt:
        from bioxlstm_jax.inference import load_lm

        lm, lm_params = load_lm(ckpt)
        cfg = lm.config.replace(context_length=length, dtype=c.dtype)
        if cfg.rcps != (c.rc == "ps"):
            raise ValueError(f"{ckpt}: the checkpoint is {'an RCPS' if cfg.rcps else 'not an RCPS'} model; use "
                             f"--config.rc={'ps' if cfg.rcps else 'ph, aug or none'}")
        backbone = jax.tree.map(jnp.asarray, lm_params["backbone"])

        def init_params(rng, params):
            if jax.tree.structure(params["backbone"]) != jax.tree.structure(backbone):
                raise ValueError(f"{ckpt}: the backbone parameters do not fit the model of its config")
            return {**params, "backbone": backbone}
    else:
        changes = dict(context_length=length, dtype=c.dtype, bidirectional=c.bidirectional, rcps=c.rc == "ps")
        if not c.preset:
            changes.update(c.small_model.to_dict())
        cfg = presets.get(c.preset or "dna_xlstm_4m", **changes)
        init_params = None
    return XLSTMClassifier(cfg, num_classes, pooling=c.pooling), init_params


@functools.lru_cache(maxsize=8)
def _jitted_apply(model, conjoin: bool):
    """One compiled forward per (model, conjoin): every split and seed reuse it."""
    return jax.jit(lambda p, t, m: model.apply({"params": p}, t, m, conjoin=conjoin))


def predict(model, params, tokens, mask, *, conjoin: bool, batch_size: int) -> np.ndarray:
    """Class predictions (N,) for tokens / padding_mask (N, L), in batches (the last one padded)."""
    apply = _jitted_apply(model, conjoin)
    out = []
    for s in range(0, len(tokens), batch_size):
        t, m = tokens[s:s + batch_size], mask[s:s + batch_size]
        n = len(t)
        if n < batch_size:
            t = np.concatenate([t, np.repeat(t[:1], batch_size - n, 0)])
            m = np.concatenate([m, np.repeat(m[:1], batch_size - n, 0)])
        out.append(np.asarray(jnp.argmax(apply(params, t, m), -1))[:n])
    return np.concatenate(out)


def _splits(c, train_path, valid_path, test_path, seed: int):
    seqs, labels = read_labeled_sequences(train_path, c.task or None)
    if valid_path:
        valid = read_labeled_sequences(valid_path, c.task or None)
        train_ = (seqs, labels)
    else:
        order = np.random.default_rng(seed).permutation(len(seqs))
        n_valid = max(1, int(round(c.valid_fraction * len(seqs))))
        pick = lambda idx: ([seqs[i] for i in idx], labels[idx])  # noqa: E731
        valid, train_ = pick(order[:n_valid]), pick(order[n_valid:])
    return {"train": train_, "valid": valid, "test": read_labeled_sequences(test_path, c.task or None)}


def finetune_seed(c, seed: int, train_path, test_path, valid_path=None, ckpt=None, out="runs/dna_finetune") -> dict:
    """Trains and evaluates one seed in ``out/seed_<seed>``; returns its ``{"valid", "test"}`` metrics."""
    workdir = Path(out) / f"seed_{seed}"
    done = workdir / "results.json"
    if done.is_file():
        return json.loads(done.read_text())
    splits = _splits(c, train_path, valid_path, test_path, seed)
    n_classes = int(max(int(np.max(y)) for _, y in splits.values()) + 1)
    length = c.max_length or max(len(s) for s in splits["train"][0])
    data = {k: tokenize(seqs, length) for k, (seqs, _) in splits.items()}
    model, init_params = _model(c, ckpt, n_classes, length)
    complement = model.config.complement_map
    if c.rc in ("ph", "aug") and complement is None:
        raise ValueError("config.rc=ph/aug needs a model with a complement map")

    def rc_aug(row, rng):
        if rng.random() < 0.5:
            row = {**row, "tokens": reverse_complement(row["tokens"]), "padding_mask": row["padding_mask"][::-1].copy()}
        return row

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
    if c.optimizer.warmup_steps < 0:
        tc.optimizer.warmup_steps = max(1, tc.steps // 100)
    if c.optimizer.min_lr < 0:
        tc.optimizer.min_lr = 0.1 * c.optimizer.lr
    conjoin = c.rc == "ph"
    task = classification_task(model, train_data, eval_data, conjoin=False, conjoin_eval=conjoin,
                               init_params=init_params)
    train(tc, str(workdir), task)

    from bioxlstm_jax.training.checkpoints import read_params

    params = read_params(workdir, "best")
    result = {"seed": seed, "num_classes": n_classes, "max_length": length,
              "sizes": {k: len(v[0]) for k, v in splits.items()}}
    for split in ("valid", "test"):
        preds = predict(model, params, *data[split], conjoin=conjoin, batch_size=c.eval_batch_size)
        result[split] = classification_metrics(splits[split][1], preds, n_classes)
    done.write_text(json.dumps(result, indent=1))
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


def plot_curves(out, seeds, path) -> None:
    """Validation accuracy and training loss against step, one line per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for seed in seeds:
        rows = [json.loads(x) for x in (Path(out) / f"seed_{seed}" / "metrics.jsonl").read_text().splitlines() if x]
        for ax, key in zip(axes, ("eval/accuracy", "train/loss")):
            pts = [(r["step"], r[key]) for r in rows if key in r]
            if pts:
                ax.plot(*zip(*pts), marker="o" if key.startswith("eval") else None, label=f"seed {seed}")
    for ax, title in zip(axes, ("validation accuracy", "training loss")):
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def finetune(c, train_path, test_path, valid_path=None, ckpt=None, out="runs/dna_finetune") -> dict:
    """Every seed of ``c.seeds``; writes ``out/results.json`` and ``out/curves.png``, returns the results."""
    seeds = [int(s) for s in c.seeds]
    if not seeds:
        raise ValueError("config.seeds is empty")
    results = [finetune_seed(c, s, train_path, test_path, valid_path, ckpt, out) for s in seeds]
    summary = {split: summarize_seeds([r[split] for r in results]) for split in ("valid", "test")}
    report = {"train": str(train_path), "valid": str(valid_path) if valid_path else None, "test": str(test_path),
              "ckpt": str(ckpt) if ckpt else None, "config": json.loads(c.to_json()), "seeds": results, **summary,
              "table": format_table(results, summary)}
    Path(out).mkdir(parents=True, exist_ok=True)
    tmp = Path(out) / ".results.json.tmp"
    tmp.write_text(json.dumps(report, indent=1))
    tmp.replace(Path(out) / "results.json")
    plot_curves(out, seeds, Path(out) / "curves.png")
    return report


def main() -> None:
    from absl import app, flags, logging
    from ml_collections import config_flags

    config_flag = config_flags.DEFINE_config_dict("config", get_config(), "fine-tuning config", lock_config=True)
    train_flag = flags.DEFINE_string("train", None, "training table (sequence,label)", required=True)
    valid_flag = flags.DEFINE_string("valid", None, "validation table (default: split off --train)")
    test_flag = flags.DEFINE_string("test", None, "test table", required=True)
    ckpt_flag = flags.DEFINE_string("ckpt", None, "pretrained workdir or converted checkpoint (default: scratch)")
    out_flag = flags.DEFINE_string("out", "runs/dna_finetune", "output directory (resumed when it exists)")

    def run(argv):
        logging.set_verbosity(logging.WARNING)
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        report = finetune(config_flag.value, train_flag.value, test_flag.value, valid_flag.value, ckpt_flag.value,
                          out_flag.value)
        print(report["table"])
        print(f"wrote {Path(out_flag.value) / 'results.json'} and curves.png")

    app.run(run)


if __name__ == "__main__":
    sys.exit(main())
