"""Zero-shot variant-fitness prediction with a homolog-conditioned Prot-xLSTM (ProteinGym protocol).

Prot-xLSTM's method (``evaluation/proteingym/score.py`` of ml-jku/Prot-xLSTM): sample up to 200
homologs from the MSA with homology weights, put the wild type last, run the context through the
model once and keep the recurrent state; every single substitution at position p is then scored from
that state with the FIM query ``<cls> WT[:p] <mask-1> WT[p+1:] <eos> <mask-1>`` (positions 0..L,
``<eos>`` 0, final ``<mask-1>`` p + 1) as ``log P(aa) - log P(wt)`` over the 20 amino acids.
Multi-mutants add their single effects; replicates (context samples) are averaged.

Differences from the reference (deliberate):
* all positions are scored in batches from one cached state per replicate (the reference runs one
  forward per position); the scores are the same (``tests/evaluation``);
* rows are cropped to ``[MSA_start - 1, MSA_end)`` on match columns (the reference upper-cases a3m
  insertions first, which shifts the crop of rows with insertions);
* the homology weights are computed on match columns with a blocked matrix product (same definition).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from bioxlstm_jax.data.formats import open_text
from bioxlstm_jax.data.protein import AA_IDS, AMINO_ACIDS, EOS, MASK_IDS, clean_sequence, encode
from bioxlstm_jax.io import pad_rows
from bioxlstm_jax.nn import XLSTMLM, forward_with_state, prefill

__all__ = [
    "Mutation", "parse_mutant", "read_dms", "wild_type_from_reference", "wild_type_from_mutants", "match_columns",
    "homology_weights", "sample_context", "single_site_scores", "naive_single_site_scores", "score_mutants",
    "independent_site_scores", "check_query", "prepare_msa", "fitness_effects", "read_reference", "assay_metrics",
    "leaderboard_summary", "LEADERBOARD_METRICS",
]


@dataclass(frozen=True)
class Mutation:
    wt: str  # wild-type amino acid
    pos: int  # 0-based index into the wild type (after the MSA_start offset)
    mt: str  # mutant amino acid


def parse_mutant(mutant: str, offset: int = 1, wild_type: str | None = None, where: str = "") -> list[Mutation]:
    """``"H24Y:A42G"`` -> mutations (``pos = int - offset``; ProteinGym's offset is ``MSA_start``).
    Checks the amino acids and, with ``wild_type``, that each wild-type residue matches."""
    out = []
    for m in mutant.split(":"):
        if len(m) < 3 or not m[1:-1].isdigit() or m[0] not in AMINO_ACIDS or m[-1] not in AMINO_ACIDS:
            raise ValueError(f"{where}mutant {mutant!r}: expected '<wt><position><mt>' with standard amino acids, "
                             "joined by ':'")
        mut = Mutation(m[0], int(m[1:-1]) - offset, m[-1])
        if wild_type is not None:
            if not 0 <= mut.pos < len(wild_type):
                raise ValueError(f"{where}mutant {m}: position {mut.pos + offset} is outside the wild type "
                                 f"(length {len(wild_type)}, offset {offset})")
            if wild_type[mut.pos] != mut.wt:
                raise ValueError(f"{where}mutant {m}: the wild type has {wild_type[mut.pos]!r} at position "
                                 f"{mut.pos + offset}, not {mut.wt!r}")
        out.append(mut)
    return out


def read_dms(path: str | os.PathLike) -> list[dict]:
    """Rows of a ProteinGym substitution file (``mutant``, ``mutated_sequence``, ``DMS_score``,
    optional ``DMS_score_bin``); errors name the file and line (a missing column, a row with another
    number of fields than the header, a score that is not a number, an empty mutant)."""
    with open_text(path) as f:
        reader = csv.DictReader(f)
        need = {"mutant", "DMS_score"}
        if reader.fieldnames is None or not need <= set(reader.fieldnames):
            raise ValueError(f"{path}:1: expected a header with columns {sorted(need)}, got {reader.fieldnames}")
        rows = []
        for row in reader:
            lineno = f.lineno
            if None in row or None in row.values():  # DictReader: extra fields under None, missing ones None
                got = sum(v is not None for k, v in row.items() if k is not None) + len(row.get(None, ()))
                raise ValueError(f"{path}:{lineno}: expected {len(reader.fieldnames)} fields as the header, got {got}")
            try:
                row["DMS_score"] = float(row["DMS_score"])
            except (TypeError, ValueError):
                raise ValueError(f"{path}:{lineno}: DMS_score {row['DMS_score']!r} is not a number") from None
            if not row.get("mutant"):
                raise ValueError(f"{path}:{lineno}: empty mutant")
            row["_line"] = lineno
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no mutants")
    return rows


def wild_type_from_reference(reference_csv: str | os.PathLike, dms_id: str) -> tuple[str, int]:
    """``(wild type, offset)`` from ProteinGym's ``DMS_substitutions.csv`` row ``DMS_id`` (``read_reference``):
    the target sequence cropped to ``[MSA_start - 1, MSA_end)`` and ``MSA_start``."""
    for row in read_reference(reference_csv):
        if row["DMS_id"] == dms_id:
            start, end = int(row["MSA_start"]), int(row["MSA_end"])
            return row["target_seq"][start - 1:end], start
    raise ValueError(f"{reference_csv}: no row with DMS_id {dms_id!r}")


def wild_type_from_mutants(rows: Sequence[dict], offset: int = 1, where: str = "") -> str:
    """Rebuild the wild type from ``mutated_sequence`` and ``mutant`` (undo each row's substitutions).
    Rows that disagree raise ``ValueError`` naming the first row (``where``: the file) that differs from
    the wild type most rows imply."""
    implied = []
    for row in rows:
        line = f"{where}:{row.get('_line', '?')}"
        seq = list(row.get("mutated_sequence") or "")
        if not seq:
            raise ValueError(f"{line}: no mutated_sequence to rebuild the wild type from")
        for m in parse_mutant(row["mutant"], offset, where=f"{line}: "):
            if not 0 <= m.pos < len(seq) or seq[m.pos] != m.mt:
                found = repr(seq[m.pos]) if 0 <= m.pos < len(seq) else "no residue"
                raise ValueError(f"{line}: mutated_sequence has {found} at {m.pos + offset}, the mutant says {m.mt!r}")
            seq[m.pos] = m.wt
        implied.append("".join(seq))
    wt = max(set(implied), key=implied.count)
    for row, seq in zip(rows, implied):
        if seq != wt:
            i = next((i for i, (a, b) in enumerate(zip(seq, wt)) if a != b), min(len(seq), len(wt)))
            raise ValueError(f"{where}:{row.get('_line', '?')}: this row implies another wild type than the other "
                             f"{implied.count(wt)} rows (residue {i + offset}: {seq[i:i + 1] or 'none'!r} here, "
                             f"{wt[i:i + 1] or 'none'!r} there)")
    return wt


QUERY_MIN_IDENTITY = 0.95  # identity over the aligned columns above which the query is the wild type's protein


def check_query(query: str, wild_type: str, offset: int, where: str) -> None:
    """Checks that ``query`` (the MSA's first row, its match columns from residue ``offset`` on) is the
    wild type's protein: an MSA of another protein (or another stretch of it) would give a Spearman
    that means nothing. Identical wherever the query is not a gap: silent. Identity over the aligned
    (non-gap) columns of at least ``QUERY_MIN_IDENTITY`` (a few residues differ, e.g. an official
    ProteinGym MSA built on another UniProt version or construct of the protein): one warning naming
    the differing residues; the wild type stays the reference sequence and the MSA the context, as
    ProteinGym's scoring does. Below it: ``ValueError``."""
    import warnings

    aligned = sum(q not in "-." for q in query)
    diffs = [(i, q, w) for i, (q, w) in enumerate(zip(query.upper(), wild_type.upper())) if q not in "-." and q != w]
    if not diffs:
        return
    identity = 1 - len(diffs) / max(aligned, 1)
    listed = ", ".join(f"{w}{offset + i}{q}" for i, q, w in diffs[:10]) + (", ..." if len(diffs) > 10 else "")
    if identity >= QUERY_MIN_IDENTITY:
        warnings.warn(f"{where}: the first row (the query) differs from the wild type at {len(diffs)} of its {aligned} "
                      f"aligned residues ({listed}: wild type, residue, MSA; identity {identity:.1%}); scoring "
                      "against the wild type with this MSA as context", UserWarning, stacklevel=2)
        return
    i, q, w = diffs[0]
    raise ValueError(f"{where}: the first row (the query) is not the wild type: {len(diffs)} of {len(wild_type)} "
                     f"residues differ (first: residue {offset + i} is {q!r} in the MSA, {w!r} in the wild type; "
                     f"identity {identity:.1%} over the {aligned} aligned residues, {QUERY_MIN_IDENTITY:.0%} needed); "
                     "expected the MSA of this assay's protein")


def match_columns(row: str) -> str:
    """An a3m/a2m row -> its match columns (lower-case insertions and '.' removed; '-' kept)."""
    return "".join(c for c in row if not c.islower() and c != ".")


def _crop_row(row: str, start: int, end: int) -> str:
    """Residues of an a3m row within match columns [start, end), insertions inside the range kept."""
    out, col = [], 0
    for c in row:
        if c.islower() or c == ".":
            if start < col < end:
                out.append(c)
        else:
            if start <= col < end:
                out.append(c)
            col += 1
    return "".join(out)


def homology_weights(msa: Sequence[str], theta: float = 0.2, block: int = 1024) -> np.ndarray:
    """Sampling weights (sum 1) of aligned rows of equal width: 1 / the number of rows within
    normalised Hamming distance ``theta`` (identity over the row's non-gap columns; gaps never match)."""
    width = len(msa[0])
    arr = np.frombuffer("".join(msa).upper().encode(), np.uint8).reshape(len(msa), width)
    gap = arr == ord("-")
    letters = np.unique(arr[~gap])
    onehot = np.stack([(arr == a) for a in letters], -1).reshape(len(msa), -1).astype(np.float32)
    nongap = np.maximum((~gap).sum(1), 1).astype(np.float32)
    neighbors = np.zeros(len(msa))
    for s in range(0, len(msa), block):
        same = onehot[s:s + block] @ onehot.T  # matching non-gap columns
        dist = 1.0 - same / nongap[s:s + block, None]
        neighbors[s:s + block] = (dist <= theta).sum(1)
    w = 1.0 / neighbors
    return w / w.sum()


def sample_context(msa_rows: Sequence[str], wild_type: str, *, start: int = 1, end: int | None = None,
                   seed: int = 0, max_tokens: int = 200_000, max_sequences: int = 200,
                   weights: np.ndarray | None = None) -> list[str]:
    """Context proteins for one replicate: ``n = min(max_tokens // L, max_sequences) - 1`` rows sampled
    without replacement with probability ∝ homology weight (all rows if fewer), reversed (most
    similar last), then the wild type. Rows are cropped to match columns ``[start - 1, end)`` and
    made gap-free (``clean_sequence``)."""
    end = end or start - 1 + len(wild_type)
    cols = [match_columns(r)[start - 1:end] for r in msa_rows]
    if weights is None:
        weights = homology_weights(cols)
    n = min(max_tokens // (len(wild_type) + 1), max_sequences) - 1
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(msa_rows), min(n, len(msa_rows)), replace=False, p=weights) if n > 0 else []
    proteins = [clean_sequence(_crop_row(msa_rows[i], start - 1, end)) for i in idx][::-1]
    return [p for p in proteins if p] + [wild_type]


def _context_tokens(proteins: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    toks = [encode(p) for p in proteins]
    return np.concatenate(toks), np.concatenate([np.arange(len(t)) for t in toks]).astype(np.int32)


def _queries(wild_type: str, positions: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(P, L + 3) FIM queries ``<cls> WT(p -> <mask-1>) <eos> <mask-1>`` and their position ids."""
    base = encode(wild_type)
    L = len(base)
    toks = np.tile(np.concatenate([base, [EOS, MASK_IDS[0]]]), (len(positions), 1)).astype(np.int32)
    pos = np.tile(np.concatenate([np.arange(L), [0, 0]]), (len(positions), 1)).astype(np.int32)
    for r, p in enumerate(positions):
        toks[r, p + 1] = MASK_IDS[0]
        pos[r, -1] = p + 1
    return toks, pos


@jax.jit
def _aa_log_probs(logits):
    return jax.nn.log_softmax(logits[..., AA_IDS], -1)


def single_site_scores(model: XLSTMLM, params, context: Sequence[str], positions: Sequence[int] | None = None,
                       *, batch_size: int = 32, segment_length: int = 4096, context_devices: int = 1,
                       progress: bool = True) -> np.ndarray:
    """(L, 20) effects ``log P(aa) - log P(wt)`` (columns in ``AMINO_ACIDS`` order) for every wild-type
    position (``context[-1]`` is the wild type), or NaN rows for positions not in ``positions``.
    The context is prefilled once (split over ``context_devices`` devices: ``nn.prefill``); the queries run in
    batches from that state. ``progress``: a progress bar over the positions."""
    wt = context[-1]
    tokens, pos = _context_tokens(context)
    _, state = prefill(model, params, jnp.asarray(tokens[None]), jnp.asarray(pos[None]),
                       segment_length=segment_length, context_devices=context_devices)
    positions = list(range(len(wt))) if positions is None else sorted(set(positions))
    out = np.full((len(wt), 20), np.nan, np.float32)
    batch_state = jax.tree.map(lambda x: jnp.broadcast_to(x, (batch_size, *x.shape[1:])), state)
    bar = tqdm(total=len(positions), desc="score", unit="position", disable=not progress)
    for s in range(0, len(positions), batch_size):
        chunk = positions[s:s + batch_size]
        q, qp = _queries(wt, chunk)
        n = len(chunk)
        q, qp = pad_rows(q, batch_size), pad_rows(qp, batch_size)  # one compiled shape
        logits, _ = forward_with_state(model, params, jnp.asarray(q), jnp.asarray(qp), batch_state)
        lp = np.asarray(_aa_log_probs(logits[:n, -1]))
        for r, p in enumerate(chunk):
            out[p] = lp[r] - lp[r, AMINO_ACIDS.index(wt[p])]
        bar.update(n)
    bar.close()
    return out


def naive_single_site_scores(model: XLSTMLM, params, context: Sequence[str], positions: Sequence[int]) -> np.ndarray:
    """Reference implementation for tests and benchmarks: one full forward of context + query per position."""
    wt = context[-1]
    tokens, pos = _context_tokens(context)
    out = np.full((len(wt), 20), np.nan, np.float32)
    for p in positions:
        q, qp = _queries(wt, [p])
        t = jnp.asarray(np.concatenate([tokens, q[0]])[None])
        tp = jnp.asarray(np.concatenate([pos, qp[0]])[None])
        logits = model.apply({"params": params}, t, tp)
        lp = np.asarray(_aa_log_probs(logits[0, -1]))
        out[p] = lp - lp[AMINO_ACIDS.index(wt[p])]
    return out


def score_mutants(effects: np.ndarray, mutations: Sequence[Sequence[Mutation]]) -> np.ndarray:
    """Sum of single-site effects per (multi-)mutant; ``effects`` (L, 20) from ``single_site_scores``."""
    return np.array([sum(effects[m.pos, AMINO_ACIDS.index(m.mt)] for m in muts) for muts in mutations], np.float64)


def independent_site_scores(msa_rows: Sequence[str], wild_type: str, *, start: int = 1,
                            weights: np.ndarray | None = None) -> np.ndarray:
    """(L, 20) log-ratios of a weighted per-column amino-acid profile of the MSA (pseudocount 1/N per
    amino acid), against the wild type: the reference's retrieval model."""
    cols = [match_columns(r)[start - 1:start - 1 + len(wild_type)].upper() for r in msa_rows]
    if weights is None:
        weights = homology_weights(cols)
    arr = np.frombuffer("".join(cols).encode(), np.uint8).reshape(len(cols), -1)
    counts = np.stack([(weights[:, None] * (arr == ord(a))).sum(0) for a in AMINO_ACIDS], -1)
    counts = counts + 1.0 / len(cols)
    logp = np.log(counts / counts.sum(-1, keepdims=True))
    wt_idx = np.array([AMINO_ACIDS.index(c) if c in AMINO_ACIDS else 0 for c in wild_type])
    return (logp - logp[np.arange(len(wild_type)), wt_idx][:, None]).astype(np.float32)


def prepare_msa(path: str | os.PathLike, wild_type: str, offset: int = 1) -> tuple[list[str], int, np.ndarray]:
    """The MSA of a fitness run: ``(rows, start, weights)``. ``start`` is the match column (1-based) of
    the wild type's first residue: ``offset`` (ProteinGym's ``MSA_start``) when the query row spans the
    whole target sequence, 1 when it spans exactly the wild type (ProteinGym's own MSAs cover
    ``[MSA_start, MSA_end]``). Raises ``ValueError`` naming the file when the query does not cover the
    wild type or is not the wild type (``check_query``). ``weights``: ``homology_weights`` of the
    rows' wild-type columns."""
    from bioxlstm_jax.data.formats import read_msa

    rows = [r for _, r in read_msa(path)]
    query = match_columns(rows[0])
    start = 1 if len(query) == len(wild_type) else offset
    query = query[start - 1:start - 1 + len(wild_type)]
    if len(query) != len(wild_type):
        raise ValueError(f"{path}: the query covers {len(query)} columns from residue {start}, the wild type has "
                         f"{len(wild_type)} residues")
    check_query(query, wild_type, offset, str(path))
    weights = homology_weights([match_columns(r)[start - 1:start - 1 + len(wild_type)] for r in rows])
    return rows, start, weights


def fitness_effects(model: XLSTMLM, params, msa_rows: Sequence[str], wild_type: str, positions: Sequence[int], *,
                    start: int = 1, weights: np.ndarray | None = None, replicates: int = 3,
                    max_tokens: int = 200_000, max_sequences: int = 200, batch_size: int = 32,
                    segment_length: int = 4096, context_devices: int = 1, progress: bool = True) -> np.ndarray:
    """(L, 20) single-site effects averaged over ``replicates`` context samples (seeds 0..n-1), each
    one prefill of ``sample_context`` then ``single_site_scores`` of ``positions``: the protocol of
    ``prot_fitness`` and ``proteingym``."""
    if replicates < 1:
        raise ValueError(f"replicates={replicates}: expected at least 1")
    effects = []
    for seed in range(replicates):
        context = sample_context(msa_rows, wild_type, start=start, seed=seed, max_tokens=max_tokens,
                                 max_sequences=max_sequences, weights=weights)
        effects.append(single_site_scores(model, params, context, positions, batch_size=batch_size,
                                          segment_length=segment_length, context_devices=context_devices, progress=progress))
    return np.mean(effects, 0)


# ------------------------------------------------------------------------------ the whole benchmark

LEADERBOARD_METRICS = ("Spearman", "AUC", "MCC", "NDCG", "Top_recall")
REFERENCE_COLUMNS = ("DMS_id", "DMS_filename", "UniProt_ID", "target_seq", "MSA_filename", "MSA_start", "MSA_end",
                     "coarse_selection_type", "MSA_Neff_L_category")


def read_reference(path: str | os.PathLike) -> list[dict]:
    """Rows of ProteinGym's ``DMS_substitutions.csv`` (every column kept as text; ``_where`` = file:line).
    Raises ``ValueError`` naming the file and line for a missing column (``REFERENCE_COLUMNS``), a row
    with another number of fields, a repeated ``DMS_id`` or an ``MSA_start``/``MSA_end`` outside the target."""
    rows, seen = [], set()
    with open_text(path) as f:
        reader = csv.DictReader(f)
        missing = [k for k in REFERENCE_COLUMNS if k not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{path}:1: expected ProteinGym reference columns {list(REFERENCE_COLUMNS)}, missing {missing}")
        for row in reader:
            where = f"{path}:{f.lineno}"
            if None in row or None in row.values():
                raise ValueError(f"{where}: expected {len(reader.fieldnames)} fields as the header")
            if row["DMS_id"] in seen:
                raise ValueError(f"{where}: DMS_id {row['DMS_id']!r} appears twice")
            seen.add(row["DMS_id"])
            try:
                start, end = int(row["MSA_start"]), int(row["MSA_end"])
            except ValueError:
                start = end = 0
            if not 1 <= start <= end <= len(row["target_seq"]):
                raise ValueError(f"{where}: expected 1 <= MSA_start <= MSA_end <= len(target_seq), got "
                                 f"{row['MSA_start']!r}, {row['MSA_end']!r}")
            rows.append({**row, "_where": where})
    if not rows:
        raise ValueError(f"{path}: no assays")
    return rows


def assay_metrics(dms_score: Sequence[float], predictions: Sequence[float],
                  dms_score_bin: Sequence[int] | None = None) -> dict[str, float]:
    """ProteinGym's five metrics of one assay (``LEADERBOARD_METRICS``): Spearman's rho with
    ``DMS_score``; ROC-AUC and MCC (the prediction binarized at its median) against ``DMS_score_bin``
    (NaN without it or without both classes); NDCG and recall of the top 10 % by ``DMS_score``
    (``evaluation.metrics``)."""
    from bioxlstm_jax.evaluation.metrics import mcc_at_median, ndcg_top, roc_auc, spearman, top_recall

    y, p = np.asarray(dms_score, float), np.asarray(predictions, float)
    out = {"Spearman": spearman(p, y), "AUC": float("nan"), "MCC": float("nan"), "NDCG": ndcg_top(y, p),
           "Top_recall": top_recall(y, p)}
    if dms_score_bin is not None:
        b = np.asarray(dms_score_bin, int)
        if 0 < b.sum() < len(b):
            out["AUC"], out["MCC"] = roc_auc(p, b), mcc_at_median(p, b)
    return out


def _nanmean(values) -> float:
    v = np.asarray([x for x in values if not np.isnan(x)], float)
    return float(v.mean()) if len(v) else float("nan")


def leaderboard_summary(per_assay: Sequence[dict], metric: str) -> dict[str, float]:
    """ProteinGym's averaging of one metric over assays (rows with ``UniProt_ID``,
    ``coarse_selection_type``, ``MSA_Neff_L_category`` and ``metric``; NaNs skipped as pandas does):
    the assays of each (protein, selection type) are averaged first, those means per selection type
    (``Function_<type>``), and ``Average`` is the mean of the selection types' values; by MSA depth the
    same with the (protein, Neff/L category) means (``<Category>_MSA_depth``)."""
    def grouped(key):
        per_protein: dict[tuple, list[float]] = {}
        for r in per_assay:
            per_protein.setdefault((r["UniProt_ID"], r[key]), []).append(float(r[metric]))
        per_value: dict[str, list[float]] = {}
        for (_, value), xs in per_protein.items():
            per_value.setdefault(value, []).append(_nanmean(xs))
        return {value: _nanmean(xs) for value, xs in sorted(per_value.items())}

    functions = grouped("coarse_selection_type")
    out = {"Average": _nanmean(functions.values())}
    out.update({f"Function_{t}": v for t, v in functions.items()})
    out.update({f"{c[:1].upper()}{c[1:]}_MSA_depth": v for c, v in grouped("MSA_Neff_L_category").items()})
    return out
