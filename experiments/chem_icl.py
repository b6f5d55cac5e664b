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

The reference ICST run: ``--config.preset=chem_xlstm_15m --config.backend=chunkwise
--config.context_length=2048 --config.batch_size=32 --config.optimizer.lr=1e-3
--config.optimizer.warmup_steps=400 --config.domains=<train+valid domains file>``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import ml_collections
import numpy as np

from bioxlstm_jax import presets
from bioxlstm_jax.assets import asset_path
from bioxlstm_jax.data import lm_batches
from bioxlstm_jax.data.formats import read_lines
from bioxlstm_jax.data.smiles import SmilesVocab
from bioxlstm_jax.nn import XLSTMLM
from bioxlstm_jax.training import base_config, causal_lm_task
from bioxlstm_jax.training.cli import run


def get_config() -> ml_collections.ConfigDict:
    c = base_config()
    c.preset = ""  # "" = the small model of `small_model`; chem_xlstm_15m
    c.small_model = ml_collections.ConfigDict(dict(embedding_dim=128, num_blocks=2, mlstm_num_heads=4))
    c.backend = "chunkwise"
    c.chunk_size = 64
    c.dtype = "float32"
    c.domains = ""  # file of domains, one per line ("" = the shipped ICST validation domains)
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


def read_domains(c) -> list[list[str]]:
    path = c.domains or str(asset_path("chem", "icst_valid_domains.txt.gz"))
    domains = []
    for where, line in read_lines(path):
        molecules = [m for m in line.strip().split(".") if m]
        if len(molecules) < 2:
            raise ValueError(f"{where}: a domain needs at least 2 molecules joined by '.', got {len(molecules)}")
        domains.append(molecules)
    if not 0 < c.heldout < len(domains):
        raise ValueError(f"{path}: {len(domains)} domains; --config.heldout must be in [1, {len(domains) - 1}]")
    return domains


def model_config(c, vocab_size: int):
    preset = presets.get(c.preset or "chem_xlstm_15m")
    changes = dict(context_length=c.context_length, backend=c.backend, chunk_size=c.chunk_size, dtype=c.dtype,
                   vocab_size=max(vocab_size, preset.vocab_size) if c.preset else vocab_size)
    if not c.preset:
        changes.update(c.small_model.to_dict())
    return presets.get(c.preset or "chem_xlstm_15m", **changes)


def _vocab(c, domains) -> SmilesVocab:
    return SmilesVocab.learn((".".join(d) for d in domains), c.tokenizer)


def build_task(c):
    domains = read_domains(c)
    vocab = _vocab(c, domains)
    train, heldout = domains[:-c.heldout], domains[-c.heldout:]
    L = c.context_length

    def transform(molecules, rng):
        order = rng.permutation(len(molecules))
        ids = vocab.encode(".".join(molecules[i] for i in order))
        return {"tokens": np.asarray(ids[-L:], np.int32)}

    def batches(source, seed, shuffle, epochs):
        def data(b, i, n):
            return lm_batches(source, batch_size=b, seq_len=L, seed=seed, transform=transform, shard_index=i,
                              shard_count=n, shuffle=shuffle, num_epochs=epochs, pack=False, pad_id=vocab.pad_id)
        return data

    model = XLSTMLM(model_config(c, len(vocab)))
    return causal_lm_task(model, batches(train, c.seed, True, None), batches(heldout, 0, False, None),
                          files={"vocab.json": json.dumps(vocab.to_json(), indent=1)})


def evaluate(c, workdir) -> dict:
    """Generation and ranking on the held-out domains; writes ``icl_results.json``."""
    import jax

    from bioxlstm_jax.evaluation import chem
    from bioxlstm_jax.evaluation.proteingym import roc_auc
    from bioxlstm_jax.inference import generate_smiles, load_lm, load_vocab, smiles_log_likelihood

    if jax.process_index() != 0:
        return {}
    model, params = load_lm(workdir)
    vocab = load_vocab(workdir)
    domains = read_domains(c)
    heldout, first = domains[-c.heldout:], len(domains) - c.heldout
    rng = np.random.default_rng(c.eval_seed)
    key = jax.random.key(c.eval_seed)
    rows = []
    for d, molecules in enumerate(heldout):
        context_mols, rest = molecules[:c.n_context], molecules[c.n_context:]
        context = ".".join(context_mols) + "."
        prompt_len = 1 + len(vocab.encode(context, add_special=False))
        lengths = [len(vocab.encode(m, add_special=False)) for m in molecules]
        budget = min(model.config.context_length - prompt_len, 5 * int(np.percentile(lengths, 75)))
        if budget < 1:
            raise ValueError(f"held-out domain {d}: the context ({prompt_len} tokens) fills the model's "
                             f"context length {model.config.context_length}; lower --config.n_context")
        key, sub = jax.random.split(key)
        out = generate_smiles(model, params, vocab, c.n_designs, sub, context=context, max_new_tokens=budget,
                              batch_size=c.n_designs, progress=False)
        designs = [m for s in out["smiles"] if s for m in s.split(".")[:3] if m]
        metrics = chem.smiles_metrics(designs, train=molecules) if designs else {"validity": 0.0, "novelty": None}
        valid = [s for s, k in zip(designs, chem.canonical(designs)) if k is not None]
        fcd = chem.fcd(valid, rest) if len(valid) >= 2 else None
        others = [m for e, mols in enumerate(heldout) if e != d for m in mols[c.n_context:]]
        positives = list(rng.choice(rest, min(c.n_rank, len(rest)), replace=False))
        negatives = list(rng.choice(others, len(positives), replace=False))
        scores = smiles_log_likelihood(model, params, vocab, positives + negatives, context=context)
        auc = roc_auc(scores, [1] * len(positives) + [0] * len(negatives))
        novelty = metrics.get("novelty")
        rows.append({"domain": first + d, "molecules": len(molecules), "designs": len(designs),
                     "validity": metrics["validity"], "fcd": fcd, "auc": auc,
                     "novelty": None if novelty is None or np.isnan(novelty) else novelty})
    summary = {k: float(np.mean([r[k] for r in rows if r[k] is not None])) if any(r[k] is not None for r in rows)
               else None for k in ("validity", "novelty", "fcd", "auc")}
    result = {"n_context": c.n_context, "n_designs": c.n_designs, "n_rank": c.n_rank, "domains": rows, "mean": summary}
    tmp = Path(workdir) / ".icl_results.json.tmp"
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, Path(workdir) / "icl_results.json")
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    print(f"{'domain':>6} {'mols':>5} {'designs':>7} {'valid':>6} {'novel':>6} {'FCD':>7} {'AUC':>6}")
    for r in rows:
        print(f"{r['domain']:>6} {r['molecules']:>5} {r['designs']:>7} {fmt(r['validity']):>6} {fmt(r['novelty']):>6} "
              f"{fmt(r['fcd']):>7} {fmt(r['auc']):>6}")
    print("mean:", {k: fmt(v) for k, v in summary.items()})
    return result


if __name__ == "__main__":
    sys.exit(run(get_config, build_task, "runs/chem_icl", after=evaluate))
