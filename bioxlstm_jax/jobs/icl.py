"""Chem-xLSTM in-context generation (ICST): train on molecular domains, then generate and rank molecules
of held-out domains from a few of their molecules (``experiments/chem_icl.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import ml_collections
import numpy as np

from bioxlstm_jax.assets import asset_path
from bioxlstm_jax.data import lm_batches
from bioxlstm_jax.data.formats import read_lines
from bioxlstm_jax.data.smiles import SmilesVocab, tokenize
from bioxlstm_jax.io import write_json
from bioxlstm_jax.jobs.cli import require_positive
from bioxlstm_jax.jobs.pretrain import chem_model_config
from bioxlstm_jax.nn import XLSTMLM
from bioxlstm_jax.training import Task, causal_lm_task, train

__all__ = ["chem_icl", "icl_task", "read_domains", "evaluate_icl"]


def read_domains(c: ml_collections.ConfigDict) -> list[list[str]]:
    """The domains of ``c.domains`` (default: the shipped ICST validation domains), each a list of SMILES."""
    path = c.domains or str(asset_path("chem", "icst_valid_domains.txt.gz"))
    domains = []
    for where, line in read_lines(path):
        molecules = [m for m in line.strip().split(".") if m]
        if len(molecules) < 2:
            raise ValueError(f"{where}: a domain needs at least 2 molecules joined by '.', got {len(molecules)}")
        for k, molecule in enumerate(molecules, 1):
            try:
                tokenize(molecule, c.tokenizer)
            except ValueError as e:
                raise ValueError(f"{where}: molecule {k} of the domain: {e}") from None
        domains.append(molecules)
    if not 0 < c.heldout < len(domains):
        raise ValueError(f"{path}: {len(domains)} domains; --config.heldout must be in [1, {len(domains) - 1}]")
    return domains


def icl_task(c: ml_collections.ConfigDict) -> Task:
    domains = read_domains(c)
    vocab = SmilesVocab.learn((".".join(d) for d in domains), c.tokenizer)
    train_domains, heldout = domains[:-c.heldout], domains[-c.heldout:]
    L = c.context_length

    def transform(molecules, rng):
        order = rng.permutation(len(molecules))
        ids = vocab.encode(".".join(molecules[i] for i in order))
        return {"tokens": np.asarray(ids[-L:], np.int32)}

    def batches(source, seed, shuffle):
        def data(b, i, n):
            return lm_batches(source, batch_size=b, seq_len=L, seed=seed, transform=transform, shard_index=i,
                              shard_count=n, shuffle=shuffle, pack=False, pad_id=vocab.pad_id)
        return data

    model = XLSTMLM(chem_model_config(c, len(vocab)))
    return causal_lm_task(model, batches(train_domains, c.seed, True), batches(heldout, 0, False),
                          files={"vocab.json": json.dumps(vocab.to_json(), indent=1)})


def evaluate_icl(c: ml_collections.ConfigDict, workdir: str) -> dict:
    """Generation and ranking on the held-out domains; writes ``icl_results.json`` and prints a table."""
    import jax

    from bioxlstm_jax.evaluation import chem
    from bioxlstm_jax.evaluation.metrics import roc_auc
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
    write_json(Path(workdir) / "icl_results.json", result)
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    print(f"{'domain':>6} {'mols':>5} {'designs':>7} {'valid':>6} {'novel':>6} {'FCD':>7} {'AUC':>6}")
    for r in rows:
        print(f"{r['domain']:>6} {r['molecules']:>5} {r['designs']:>7} {fmt(r['validity']):>6} {fmt(r['novelty']):>6} "
              f"{fmt(r['fcd']):>7} {fmt(r['auc']):>6}")
    print("mean:", {k: fmt(v) for k, v in summary.items()})
    return result


def chem_icl(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains on the domains (resuming from ``workdir``), then ``evaluate_icl``."""
    require_positive(config, "n_context", "n_designs", "n_rank")
    train(config, workdir, icl_task(config))
    return evaluate_icl(config, workdir)
