"""Prot-xLSTM data: the 38-token vocabulary, homolog-context examples with multi-span
fill-in-the-middle (FIM) and FIM-aware position ids, exactly as ml-jku/Prot-xLSTM builds them.

A protein is ``<cls>`` followed by its residues (no end token: the next ``<cls>`` separates
proteins). A training example is the proteins of one homolog cluster in random order, each with
FIM applied independently, concatenated and truncated to the context length::

    <cls> a b <mask-1> e f <mask-2> i <eos> <mask-1> c d <mask-2> g h   (spans "cd" and "gh")
    0     1 2 3        5 6 7        9 0     3        3 4 7        7 8   (position ids)

Positions: ``<cls>`` = 0, residue j = j, each ``<mask-i>`` = the position of the first residue of
span i (so it shares it with that residue), ``<eos>`` = 0; clamped to ``max_position - 1``.

Differences from the reference (deliberate): the reference drops the last residue of every cluster
(its memmap slice ``[Start:End]`` has an inclusive End); we keep it. A2M insert gaps '.' and '*'
are removed like '-' (the reference only removes '-', and never reads a2m files).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "VOCAB", "AA_TO_ID", "CLS", "PAD", "EOS", "UNK", "MASK_IDS", "AMINO_ACIDS", "AA_IDS",
    "clean_sequence", "encode", "decode", "sample_fim_spans", "apply_fim", "homolog_example",
    "fim_token_mask", "last_sequence_target_mask", "split_proteins", "reorder_fim",
]

VOCAB = ("<cls>", "<pad>", "<eos>", "<unk>", "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K", "Q", "N",
         "F", "Y", "M", "H", "W", "C", "X", "B", "U", "Z", "O", ".", "-", "<null_1>", "<mask>",
         "<mask-1>", "<mask-2>", "<mask-3>", "<mask-4>", "<mask-5>")
AA_TO_ID = {tok: i for i, tok in enumerate(VOCAB)}
CLS, PAD, EOS, UNK = 0, 1, 2, 3
MASK_IDS = (33, 34, 35, 36, 37)  # <mask-1> ... <mask-5>
AMINO_ACIDS = "".join(VOCAB[4:24])  # the 20 standard amino acids, ids 4..23 (fitness scoring uses these)
AA_IDS = np.arange(4, 24)

_LOOKUP = np.full(256, UNK, np.int32)
for _tok, _i in AA_TO_ID.items():
    if len(_tok) == 1:
        _LOOKUP[ord(_tok)] = _i
_DROP = str.maketrans("", "", "-.*")


def clean_sequence(row: str) -> str:
    """An alignment row -> the unaligned protein: gaps ('-', '.', '*') removed, insertions upper-cased."""
    return row.translate(_DROP).upper()


def encode(protein: str, cls: bool = True) -> np.ndarray:
    """Unaligned protein -> int32 ids ``[<cls>, residues...]``; unknown letters -> ``<unk>``."""
    ids = _LOOKUP[np.frombuffer(protein.encode("ascii"), np.uint8)]
    return np.concatenate([[CLS], ids]).astype(np.int32) if cls else ids.astype(np.int32)


def decode(ids) -> str:
    """ids -> text; special tokens spelled out (``<cls>``, ``<mask-1>``, ...)."""
    return "".join(VOCAB[int(i)] for i in ids)


def sample_fim_spans(n_tokens: int, rng: np.random.Generator, *, max_spans: int = 5, mask_fraction: float = 0.2,
                     always_mask: bool = False) -> list[tuple[int, int]]:
    """Multi-span FIM spans ``[(start, end), ...]`` (token indices, ``<cls>`` = 0) for a protein of
    ``n_tokens`` tokens including its ``<cls>``: the reference's ``MultipleSpanFIM``. The count is
    Poisson(1) redrawn while > ``max_spans`` (at least 1 with ``always_mask``); starts are distinct
    residues; span i has length ``randint(1, max(int(mask_fraction * gap), 2))`` capped at the gap to
    the next start (or the end)."""
    if max_spans > len(MASK_IDS):
        raise ValueError(f"max_spans={max_spans} exceeds the {len(MASK_IDS)} mask tokens")
    n = max_spans + 1
    while n > max_spans:
        n = int(rng.poisson(1.0))
    if always_mask:
        n = max(n, 1)
    n = min(n, n_tokens - 1)
    starts = sorted(int(s) for s in rng.choice(np.arange(1, n_tokens), n, replace=False)) if n else []
    spans = []
    for s, nxt in zip(starts, starts[1:] + [n_tokens]):
        gap = nxt - s
        spans.append((s, s + min(int(rng.integers(1, max(int(gap * mask_fraction), 2))), gap)))
    return spans


def apply_fim(tokens: np.ndarray, spans: Sequence[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """One protein's ids (``<cls>`` first) and sorted, disjoint spans -> (FIM ids, position ids).

    ``[<cls> kept0 <mask-1> kept1 ... <eos> <mask-1> span1 <mask-2> span2 ...]``; no spans: unchanged.
    """
    pos = np.arange(len(tokens), dtype=np.int32)
    if not spans:
        return np.asarray(tokens, np.int32), pos
    kept_t, kept_p, mid_t, mid_p, prev = [], [], [], [], 0
    for i, (s, e) in enumerate(spans):
        if not prev <= s < e <= len(tokens) or s == 0:
            raise ValueError(f"spans must be sorted, disjoint, non-empty and after the <cls>: {spans}")
        m = MASK_IDS[i]
        kept_t += [tokens[prev:s], [m]]
        kept_p += [pos[prev:s], [s]]
        mid_t += [[m], tokens[s:e]]
        mid_p += [[s], pos[s:e]]
        prev = e
    kept_t += [tokens[prev:], [EOS]]
    kept_p += [pos[prev:], [0]]
    return (np.concatenate(kept_t + mid_t).astype(np.int32), np.concatenate(kept_p + mid_p).astype(np.int32))


def homolog_example(proteins: Sequence[str], rng: np.random.Generator, *, max_len: int, fim: bool = True,
                    max_spans: int = 5, mask_fraction: float = 0.2, always_mask: bool = False,
                    sample_proteins: bool = False, max_position: int = 2048, fim_only_loss: bool = False) -> dict:
    """One training example from a homolog cluster (unaligned proteins, see ``clean_sequence``).

    The proteins in random order (``sample_proteins``: a random number 1..N of them), each with
    multi-span FIM (``fim``), concatenated and truncated to ``max_len`` tokens (the cut may fall
    inside a protein). Returns ``{"tokens", "positions"}`` int32 (L,) and, with ``fim_only_loss``,
    ``"loss_mask"`` float32 (L,): 1 on FIM-part targets and ``<cls>`` (the reference's
    ``compute_only_fim_loss``).
    """
    n = len(proteins)
    if n == 0:
        raise ValueError("a homolog cluster needs at least one protein")
    count = int(rng.integers(1, n + 1)) if sample_proteins else n
    order = rng.choice(n, count, replace=False)
    toks, poss, total = [], [], 0
    for j in order:
        t = encode(proteins[j])
        if fim and len(t) > 1:
            t, p = apply_fim(t, sample_fim_spans(len(t), rng, max_spans=max_spans, mask_fraction=mask_fraction,
                                                 always_mask=always_mask))
        else:
            p = np.arange(len(t), dtype=np.int32)
        toks.append(t)
        poss.append(p)
        total += len(t)
        if total >= max_len:  # later proteins would be cut off anyway
            break
    tokens = np.concatenate(toks)[:max_len]
    out = {"tokens": tokens, "positions": np.minimum(np.concatenate(poss)[:max_len], max_position - 1)}
    if fim_only_loss:
        out["loss_mask"] = (fim_token_mask(tokens) | (tokens == CLS)).astype(np.float32)
    return out


def fim_token_mask(tokens):
    """(..., L) ids -> bool, True on the FIM part of each protein (after its ``<eos>``, up to the next
    ``<cls>``, ``<eos>`` excluded): the reference's ``find_fim_indices``. numpy or jax arrays."""
    xp = _xp(tokens)
    idx = xp.arange(tokens.shape[-1])
    last_eos = _cummax(xp, xp.where(tokens == EOS, idx, -1))
    last_cls = _cummax(xp, xp.where(tokens == CLS, idx, -1))
    return (last_eos > last_cls) & (tokens != EOS)


def last_sequence_target_mask(tokens):
    """(..., L) ids -> bool over targets ``tokens[..., 1:]``: the targets of the last complete protein
    of each row (its residues, FIM part and the ``<cls>`` that closes it). The reference's
    ``last_seq`` perplexity subset for truncated rows."""
    xp = _xp(tokens)
    is_cls = (tokens == CLS).astype(xp.int32)
    group = xp.cumsum(is_cls, axis=-1)[..., :-1]  # proteins started before each target
    total = xp.sum(is_cls, axis=-1, keepdims=True)
    return (group == total - 1) & (total >= 2)


def split_proteins(tokens: Sequence[int]) -> list[np.ndarray]:
    """A concatenation of proteins -> one id array per protein, each starting with its ``<cls>``."""
    tokens = np.asarray(tokens)
    starts = list(np.flatnonzero(tokens == CLS))
    if not starts or starts[0] != 0:
        starts = [0] + starts
    return [tokens[s:e] for s, e in zip(starts, starts[1:] + [len(tokens)])]


def reorder_fim(tokens: Sequence[int]) -> np.ndarray:
    """One protein in FIM layout -> its natural order: each ``<mask-i>`` slot of the first part is
    replaced by the residues after ``<mask-i>`` in the part after ``<eos>`` (the reference's
    ``reorder_masked_sequence``). Without ``<eos>`` the ids are returned unchanged."""
    tokens = np.asarray(tokens)
    eos = np.flatnonzero(tokens == EOS)
    if not len(eos):
        return tokens
    head, tail = tokens[:eos[0]], tokens[eos[0] + 1:]
    fills, cur = {}, None
    for t in tail:
        if int(t) in MASK_IDS:
            cur = int(t)
            fills[cur] = []
        elif cur is not None:
            fills[cur].append(int(t))
    out = []
    for t in head:
        out.extend(fills.get(int(t), []) if int(t) in MASK_IDS else [int(t)])
    return np.asarray(out, np.int32)


def _xp(x):
    if isinstance(x, np.ndarray):
        return np
    import jax.numpy as jnp

    return jnp


def _cummax(xp, x):
    if xp is np:
        return np.maximum.accumulate(x, axis=-1)
    import jax

    return jax.lax.cummax(x, axis=x.ndim - 1)
