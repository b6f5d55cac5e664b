"""Zero-shot variant fitness of one ProteinGym assay with a homolog-conditioned Prot-xLSTM
(``experiments/prot_fitness.py``)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import ml_collections
import numpy as np

from bioxlstm_jax.data.protein import VOCAB
from bioxlstm_jax.io import atomic_path, atomic_write
from bioxlstm_jax.jobs.cli import load_model, require, require_fraction, require_positive

__all__ = ["prot_fitness", "check_protein", "check_scoring"]


def check_protein(sequence: str, where: str) -> str:
    """``sequence`` if every letter is a residue of the protein vocabulary, else ``ValueError``."""
    from bioxlstm_jax.data.formats import RESIDUES

    bad = sorted(set(sequence) - set(RESIDUES))
    if bad:
        raise ValueError(f"{where}: {''.join(bad)!r} are not residues (expected {RESIDUES})")
    return sequence


def check_scoring(c) -> None:
    """The scoring flags ``prot_fitness`` and ``proteingym`` share: ``ValueError`` naming the first one out
    of its range."""
    require_positive(c, "replicates", "max_context_tokens", "max_context_sequences", "batch_size", "segment_length",
                     "context_devices")
    require_fraction(c, "retrieval_alpha")


def _stem(path: str) -> str:
    name = Path(path).name
    for ext in (".gz", ".csv"):
        name = name[: -len(ext)] if name.endswith(ext) else name
    return name


def _scatter(path: Path, pred, truth, title: str) -> None:
    from matplotlib.figure import Figure  # no pyplot: never touches the caller's backend

    fig = Figure(figsize=(5, 4.5))
    ax = fig.subplots()
    ax.scatter(truth, pred, s=6, alpha=0.5)
    ax.set_xlabel("DMS_score")
    ax.set_ylabel("predicted_score (log-ratio)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)


def prot_fitness(c: ml_collections.ConfigDict, workdir: str) -> dict:
    """Scores every mutant of ``c.dms`` (ProteinGym protocol: per replicate a homology-weighted context
    of ``c.msa`` with the wild type last, one prefill, every mutated position scored from the cached
    state; multi-mutants add single effects). Writes ``workdir/<dms name>_predictions.csv`` (the DMS
    rows plus ``predicted_score``) and, with ``c.plot``, a scatter plot ``<dms name>_predictions.png``.
    Returns ``{"spearman", "auc" (or None), "predictions": path}``."""
    from bioxlstm_jax.evaluation import proteingym as pg
    from bioxlstm_jax.evaluation.metrics import roc_auc, spearman
    require(c, "ckpt", "dms", "msa")
    check_scoring(c)
    require_positive(c, "offset")
    rows = pg.read_dms(c.dms)
    offset = c.offset
    if c.target_seq:
        wt = check_protein(c.target_seq.upper(), "--config.target_seq")
    elif c.reference:
        wt, offset = pg.wild_type_from_reference(c.reference, c.dms_id or _stem(c.dms))
    else:
        wt = pg.wild_type_from_mutants(rows, offset, where=str(c.dms))
    mutations = [pg.parse_mutant(r["mutant"], offset, wt, where=f"{c.dms}:{r['_line']}: ") for r in rows]
    msa, start, weights = pg.prepare_msa(c.msa, wt, offset)
    positions = sorted({m.pos for muts in mutations for m in muts})
    model, params = load_model(c, vocab_size=len(VOCAB), domain="protein", causal=True)
    effect = pg.fitness_effects(model, params, msa, wt, positions, start=start, weights=weights,
                                replicates=c.replicates, max_tokens=c.max_context_tokens,
                                max_sequences=c.max_context_sequences, batch_size=c.batch_size,
                                segment_length=c.segment_length, context_devices=c.context_devices)
    if c.retrieval_alpha:
        retrieval = pg.independent_site_scores(msa, wt, start=start, weights=weights)
        effect = (1 - c.retrieval_alpha) * effect + c.retrieval_alpha * retrieval
    pred = pg.score_mutants(effect, mutations)
    for r, p in zip(rows, pred):
        r["predicted_score"] = f"{p:.6f}"
    out = Path(workdir) / f"{_stem(c.dms)}_predictions.csv"
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=[k for k in rows[0] if not k.startswith("_")], extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(out, text.getvalue())
    truth = np.array([r["DMS_score"] for r in rows])
    result = {"spearman": spearman(pred, truth), "auc": None, "predictions": str(out)}
    msg = f"{len(rows)} mutants, {len(positions)} positions, {c.replicates} replicates: Spearman {result['spearman']:.4f}"
    if "DMS_score_bin" in rows[0] and all(r["DMS_score_bin"] not in ("", None) for r in rows):
        labels = np.array([int(float(r["DMS_score_bin"])) for r in rows])
        if 0 < labels.sum() < len(labels):
            result["auc"] = roc_auc(pred, labels)
            msg += f", AUC {result['auc']:.4f}"
    print(msg)
    print(f"wrote {out}")
    if c.plot:
        png = out.with_suffix(".png")
        _scatter(png, pred, truth, f"{_stem(c.dms)}: Spearman {result['spearman']:.3f}")
        print(f"wrote {png}")
    return result
