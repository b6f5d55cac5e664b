"""Scores of generated proteins against their family, as Prot-xLSTM's generation benchmark computes them.

* ``hamming_to_family``: each protein globally aligned to every natural member of the family
  (Biopython ``PairwiseAligner``: match 1, mismatch -1, gap open and extend -1), the Hamming distance of
  the two aligned rows over the alignment's length (a gap against a residue counts as a mismatch); a
  member identical to the protein is skipped; min / median / mean / std over the family.
* ``family_hmm`` and ``hmmer_scores``: a profile HMM built from the family MSA (pyhmmer
  ``Builder.build_msa``; lower case, '.' and '*' removed) and each protein's bit score and E-value
  against it (``Pipeline(bias_filter=False, F1=F2=F3=1.0).search_hmm``); a protein without a hit scores
  0 with E-value 1.
* ``family_summary``: per family, the ``best`` lowest-perplexity samples' mean / median / std of each
  score, their deltas against the family's natural sequences scored the same way, the two-sample KS
  statistic and p-value against the natural distribution, and the Pearson r of each score with
  perplexity over all samples; ``summarize_families`` averages the absolute values over families with a
  95 % interval (1.96 standard errors), as the reference's table.

Structure scores (ESMFold pTM / pLDDT) are left out: the folding model's weights cannot be fetched here.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

import numpy as np

__all__ = ["SCORES", "hamming_to_family", "family_hmm", "hmmer_scores", "score_proteins", "family_summary",
           "summarize_families"]

# the per-protein scores a family summary covers (the reference's, structure aside)
SCORES = ("sequence_length", "min_hamming", "hmmer_score")
_INSERTIONS = str.maketrans(dict.fromkeys(string.ascii_lowercase + ".*"))


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError:
        raise ModuleNotFoundError(f"scoring generated proteins needs {module.split('.')[0]}: pip install "
                                  "'bioxlstm-jax[protein]' (biopython, pyhmmer)") from None


def _aligner():
    Align = _require("Bio.Align")

    aligner = Align.PairwiseAligner()
    aligner.mode = "global"
    aligner.match_score, aligner.mismatch_score = 1, -1
    aligner.open_gap_score = aligner.extend_gap_score = -1
    return aligner


def hamming_to_family(protein: str, family: Sequence[str], aligner=None) -> dict[str, float]:
    """``{"min_hamming", "median_hamming", "mean_hamming", "std_hamming"}`` of ``protein`` against the
    unaligned natural ``family`` (members equal to ``protein`` skipped; NaN when none is left)."""
    aligner = aligner or _aligner()
    distances = []
    for member in family:
        if member == protein:
            continue
        alignment = aligner.align(member, protein)[0]
        a, b = alignment[0], alignment[1]
        distances.append(sum(x != y for x, y in zip(a, b)) / len(a))
    if not distances:
        return {k: float("nan") for k in ("min_hamming", "median_hamming", "mean_hamming", "std_hamming")}
    d = np.asarray(distances)
    return {"min_hamming": float(d.min()), "median_hamming": float(np.median(d)), "mean_hamming": float(d.mean()),
            "std_hamming": float(d.std())}


def family_hmm(msa_rows: Sequence[str]):
    """A pyhmmer profile HMM of the family's aligned rows (a3m / a2m: insertions removed)."""
    pyhmmer = _require("pyhmmer")

    alphabet = pyhmmer.easel.Alphabet.amino()
    rows = [r.translate(_INSERTIONS).upper() for r in msa_rows]
    msa = pyhmmer.easel.TextMSA(name=b"family", sequences=[
        pyhmmer.easel.TextSequence(name=str(i).encode(), sequence=r) for i, r in enumerate(rows)]).digitize(alphabet)
    hmm, _, _ = pyhmmer.plan7.Builder(alphabet).build_msa(msa, pyhmmer.plan7.Background(alphabet))
    return hmm


def hmmer_scores(hmm, proteins: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(bit scores, E-values) of ``proteins`` against ``hmm``; a protein without a hit: 0 and 1."""
    pyhmmer = _require("pyhmmer")

    alphabet = hmm.alphabet
    block = pyhmmer.easel.TextSequenceBlock([pyhmmer.easel.TextSequence(name=str(i).encode(), sequence=p)
                                             for i, p in enumerate(proteins)]).digitize(alphabet)
    pipeline = pyhmmer.plan7.Pipeline(alphabet, background=pyhmmer.plan7.Background(alphabet), bias_filter=False,
                                      F1=1.0, F2=1.0, F3=1.0)
    scores, evalues = np.zeros(len(proteins)), np.ones(len(proteins))
    for hit in pipeline.search_hmm(hmm, block):
        name = hit.name.decode() if isinstance(hit.name, bytes) else hit.name
        scores[int(name)], evalues[int(name)] = hit.score, hit.evalue
    return scores, evalues


def score_proteins(proteins: Sequence[str], family: Sequence[str], hmm) -> list[dict]:
    """Every score of each protein: ``sequence_length``, the four Hamming statistics against the unaligned
    ``family``, ``hmmer_score`` and ``hmmer_evalue`` against ``hmm``."""
    aligner = _aligner()
    scores, evalues = hmmer_scores(hmm, proteins)
    return [{"sequence_length": len(p), **hamming_to_family(p, family, aligner), "hmmer_score": float(s),
             "hmmer_evalue": float(e)} for p, s, e in zip(proteins, scores, evalues)]


def family_summary(samples: Sequence[dict], natural: Sequence[dict], best: int = 100) -> dict[str, float]:
    """One family's row of the table: for each score of ``SCORES``, over the ``best`` lowest-perplexity
    ``samples`` (dicts with the scores and ``perplexity``): ``<score>_mean``, ``_median``, ``_std``,
    ``_delta_mean`` and ``_delta_median`` (minus the ``natural`` proteins'), ``_ks`` and ``_ks_pvalue``
    (two-sample Kolmogorov-Smirnov against the natural values), and ``_ppl_r`` (Pearson r with perplexity
    over all samples; NaN when either is constant)."""
    from scipy import stats

    if not samples or not natural:
        raise ValueError(f"family_summary needs samples and natural proteins, got {len(samples)} and {len(natural)}")
    chosen = sorted(samples, key=lambda r: r["perplexity"])[:best]
    ppl = np.asarray([r["perplexity"] for r in samples], np.float64)
    out = {"n_samples": len(samples), "n_best": len(chosen), "n_natural": len(natural)}
    for score in SCORES:
        top = np.asarray([r[score] for r in chosen], np.float64)
        nat = np.asarray([r[score] for r in natural], np.float64)
        top, nat = top[~np.isnan(top)], nat[~np.isnan(nat)]
        values = np.asarray([r[score] for r in samples], np.float64)
        out[f"{score}_mean"], out[f"{score}_median"], out[f"{score}_std"] = top.mean(), np.median(top), top.std()
        out[f"{score}_delta_mean"] = top.mean() - nat.mean()
        out[f"{score}_delta_median"] = np.median(top) - np.median(nat)
        ks = stats.ks_2samp(top, nat)
        out[f"{score}_ks"], out[f"{score}_ks_pvalue"] = float(ks.statistic), float(ks.pvalue)
        keep = ~np.isnan(values)
        constant = np.ptp(values[keep]) == 0 or np.ptp(ppl[keep]) == 0 if keep.sum() > 1 else True
        out[f"{score}_ppl_r"] = float("nan") if constant else float(stats.pearsonr(values[keep], ppl[keep]).statistic)
    return {k: float(v) if not isinstance(v, int) else v for k, v in out.items()}


def summarize_families(rows: Sequence[dict]) -> dict[str, dict[str, float]]:
    """Over the families' ``family_summary`` rows, per column: the mean of the absolute values and the
    half-width of its 95 % interval (1.96 x std / sqrt(families)), as the reference's table (``{}`` for
    no rows)."""
    if not rows:
        return {}
    keys = [k for k in rows[0] if not k.startswith("n_")]
    out = {}
    for k in keys:
        x = np.abs(np.asarray([r[k] for r in rows], np.float64))
        x = x[~np.isnan(x)]
        out[k] = {"mean": float(x.mean()) if len(x) else float("nan"),
                  "ci95": float(1.96 * x.std() / np.sqrt(len(x))) if len(x) else float("nan"), "families": len(x)}
    return out
