"""DNA-xLSTM inference: embeddings of sequences and zero-shot variant-effect scores.

* ``embed(model, params, sequences)`` yields the hidden states (after the post-blocks norm) of each
  sequence; ``write_embeddings(model, params, fasta, out)`` stores them for a FASTA as ``.npy``.
* ``variant_scores(model, params, genome, variants)``: the log-likelihood ratio of the alternate vs
  the reference allele in a window around each variant (none of the references offers this for
  DNA-xLSTM). MLM models: ``log p(alt) - log p(ref)`` at the masked variant position (the masked
  marginal); causal models: ``log P(window with alt) - log P(window with ref)``.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from bioxlstm_jax.data.dna import BASE_IDS, MASK, PAD, encode
from bioxlstm_jax.data.formats import GENOME_ALPHABET, open_text, read_fasta
from bioxlstm_jax.inference.generate import log_probs
from bioxlstm_jax.io import atomic_path, fixed_batches, pad_rows
from bioxlstm_jax.nn import XLSTMLM

__all__ = ["embed", "write_embeddings", "Variant", "read_variants", "variant_scores"]


@functools.partial(jax.jit, static_argnums=0)
def _hidden(model, params, tokens):
    return model.apply({"params": params}, tokens, method=lambda m, t: m.backbone(t)).astype(jnp.float32)


def embed(model: XLSTMLM, params, sequences: Sequence[str], *, batch_size: int = 8) -> Iterator[tuple[int, np.ndarray]]:
    """``(index, hidden (len, D') float32)`` for every sequence (D' = 2D for RCPS models: the forward
    and the RC-branch halves). Sequences of equal length are batched together (no padding, so
    bidirectional models see exactly the sequence); each distinct length compiles once. Bases are
    read upper-cased (the pretraining tokenizer)."""
    by_length: dict[int, list[int]] = {}
    for i, s in enumerate(sequences):
        if not s:
            raise ValueError(f"sequence {i} is empty")
        by_length.setdefault(len(s), []).append(i)
    for _, idx in sorted(by_length.items()):
        for b in range(0, len(idx), batch_size):
            chunk = idx[b:b + batch_size]
            tokens = pad_rows(np.stack([encode(sequences[i]) for i in chunk]), batch_size)  # one shape per length
            h = np.asarray(_hidden(model, params, jnp.asarray(tokens)))
            for j, i in enumerate(chunk):
                yield i, h[j]


def write_embeddings(model: XLSTMLM, params, fasta: str | os.PathLike, out: str | os.PathLike, *,
                     batch_size: int = 8, progress: bool = True) -> dict[str, Path]:
    """Embeddings of every record of ``fasta`` in ``out/``:

    * ``pooled.npy`` (N, D') float32: the mean over each sequence's positions;
    * ``per_position.npy`` (total bases, D') float32: sequence i at rows ``offsets[i]:offsets[i+1]``;
    * ``offsets.npy`` (N + 1,) int64 and ``ids.txt`` (the header's first word, one per line).
    Written to temporary names and renamed at the end, so a crash leaves no partial output.
    """
    records = [(h.split()[0] if h.split() else f"seq{i}", s)
               for i, (h, s) in enumerate(read_fasta(fasta, alphabet=GENOME_ALPHABET))]
    if not records:
        raise ValueError(f"{fasta}: no sequences")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lengths = np.asarray([len(s) for _, s in records], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    width = int(jax.eval_shape(lambda: _hidden(model, params, jnp.zeros((1, 1), jnp.int32))).shape[-1])
    paths = {name: out / f"{name}.npy" for name in ("pooled", "per_position", "offsets")}
    paths["ids"] = out / "ids.txt"
    with contextlib.ExitStack() as files:
        tmp = {name: files.enter_context(atomic_path(path)) for name, path in paths.items()}
        per_pos = np.lib.format.open_memmap(tmp["per_position"], mode="w+", dtype=np.float32,
                                            shape=(int(offsets[-1]), width))
        pooled = np.lib.format.open_memmap(tmp["pooled"], mode="w+", dtype=np.float32, shape=(len(records), width))
        with tqdm(total=len(records), desc="embed", unit="seq", disable=not progress) as bar:
            for i, h in embed(model, params, [s for _, s in records], batch_size=batch_size):
                per_pos[offsets[i]:offsets[i + 1]] = h
                pooled[i] = h.mean(0)
                bar.update(1)
        per_pos.flush()
        pooled.flush()
        del per_pos, pooled
        np.save(tmp["offsets"], offsets)
        tmp["ids"].write_text("".join(f"{name}\n" for name, _ in records))
    return paths


@dataclass(frozen=True)
class Variant:
    chrom: str
    pos: int  # 1-based, as VCF
    ref: str
    alt: str
    where: str  # "<file>:<line>" for error messages
    fields: dict  # the row's other columns (e.g. a label)


def read_variants(path: str | os.PathLike) -> list[Variant]:
    """Single-base substitutions of a VCF (``#CHROM POS ID REF ALT ...``; several ALT alleles give
    several variants) or of a CSV / TSV with columns ``chrom``, ``pos`` (1-based), ``ref``, ``alt``
    (any others are kept in ``fields``; a ``label`` column must hold 0 or 1). Errors name the file and
    line; indels, non-ACGT alleles and rows with another number of columns than the header are errors,
    not skipped."""
    variants = []
    with open_text(path) as f:
        lines = [(n, line.rstrip("\n\r")) for n, line in enumerate(f, 1)]
    lines = [(n, line) for n, line in lines if line.strip() and not line.startswith("##")]
    if not lines:
        raise ValueError(f"{path}: no variants")
    n0, header_line = lines[0]
    vcf = header_line.startswith("#CHROM")
    delimiter = "\t" if vcf or "\t" in header_line else ","
    header = [h.strip().lstrip("#").lower() for h in next(csv.reader([header_line], delimiter=delimiter))]
    need = ("chrom", "pos", "ref", "alt")
    if any(k not in header for k in need):
        raise ValueError(f"{path}:{n0}: expected a VCF '#CHROM POS ID REF ALT' header or columns {need}, got {header}")
    col = {k: header.index(k) for k in need}
    for n, line in lines[1:]:
        row = next(csv.reader([line], delimiter=delimiter))
        where = f"{path}:{n}"
        if len(row) != len(header):
            raise ValueError(f"{where}: expected {len(header)} columns as the header, got {len(row)}")
        try:
            pos = int(row[col["pos"]])
        except ValueError:
            raise ValueError(f"{where}: position must be an integer, got {row[col['pos']]!r}") from None
        if pos < 1:
            raise ValueError(f"{where}: positions are 1-based, got {pos}")
        ref = row[col["ref"]].strip().upper()
        fields = {h: row[i] for i, h in enumerate(header) if h not in need}
        if "label" in fields and fields["label"].strip() not in ("0", "1"):
            raise ValueError(f"{where}: expected a label 0 or 1, got {fields['label']!r}")
        for alt in row[col["alt"]].strip().upper().split(","):
            if len(ref) != 1 or len(alt) != 1 or ref not in "ACGT" or alt not in "ACGT" or ref == alt:
                raise ValueError(f"{where}: only single-base substitutions between A, C, G, T are scored, "
                                 f"got {ref}>{alt}")
            variants.append(Variant(row[col["chrom"]].strip(), pos, ref, alt, where, fields))
    if not variants:
        raise ValueError(f"{path}: no variants")
    return variants


def variant_scores(model: XLSTMLM, params, genome, variants: Sequence[Variant], *, window: int = 1024,
                   objective: str = "mlm", batch_size: int = 16, progress: bool = True) -> np.ndarray:
    """Log-likelihood ratios (alt vs ref) of ``variants`` (N,) float64 in windows of ``window`` bp
    centred on each variant (shifted to stay inside the chromosome).

    ``genome``: a ``data.dna.Genome`` or ``{chrom: sequence}``. ``objective``: ``"mlm"`` (the variant
    base masked, N bases as [PAD] as in MLM pretraining; one forward per variant) or ``"clm"`` (two
    forwards, the window's total log-likelihood with each allele; the model must be causal). The
    genome's base must equal ``ref`` (case-insensitive), else ``ValueError`` naming the row.
    """
    if objective not in ("mlm", "clm"):
        raise ValueError(f"objective must be 'mlm' or 'clm', got {objective!r}")
    if objective == "clm" and not model.config.causal:
        raise ValueError("objective='clm' needs a causal model; score a bidirectional / RCPS model with 'mlm'")
    sizes = genome.sizes if hasattr(genome, "sizes") else {c: len(s) for c, s in genome.items()}
    fetch = genome.fetch if hasattr(genome, "fetch") else (lambda c, s, n: genome[c][s:s + n])
    rows, offsets = [], []
    for v in variants:
        if v.chrom not in sizes:
            raise ValueError(f"{v.where}: chromosome {v.chrom!r} is not in the genome ({sorted(sizes)[:5]}...)")
        size, p0 = sizes[v.chrom], v.pos - 1
        if p0 >= size:
            raise ValueError(f"{v.where}: position {v.pos} is past the end of {v.chrom} ({size} bp)")
        if size < window:
            raise ValueError(f"{v.where}: {v.chrom} ({size} bp) is shorter than the window ({window} bp)")
        start = min(max(p0 - window // 2, 0), size - window)
        ids = encode(fetch(v.chrom, start, window))
        if ids[p0 - start] != BASE_IDS[v.ref]:
            raise ValueError(f"{v.where}: the reference allele is {v.ref} but {v.chrom}:{v.pos} is "
                             f"{fetch(v.chrom, p0, 1)!r} in the genome (wrong assembly or 0-based positions?)")
        rows.append(ids)
        offsets.append(p0 - start)
    scores = np.zeros(len(variants))
    bar = tqdm(total=len(variants), desc="variants", unit="var", disable=not progress)
    for batch in fixed_batches(len(variants), batch_size):
        idx = list(range(batch.start, batch.stop))
        ref = [BASE_IDS[variants[i].ref] for i in idx]
        alt = [BASE_IDS[variants[i].alt] for i in idx]
        if objective == "mlm":
            tokens = np.stack([np.where(rows[i] == BASE_IDS["N"], PAD, rows[i]) for i in idx])
            tokens[np.arange(len(idx)), [offsets[i] for i in idx]] = MASK
            tokens = pad_rows(tokens, batch_size)
            lp = np.asarray(log_probs(model, params, jnp.asarray(tokens)))[:len(idx)]
            at = lp[np.arange(len(idx)), [offsets[i] for i in idx]]
            scores[idx] = at[np.arange(len(idx)), alt] - at[np.arange(len(idx)), ref]
        else:
            both = []
            for allele in (ref, alt):
                t = np.stack([rows[i] for i in idx])
                t[np.arange(len(idx)), [offsets[i] for i in idx]] = allele
                both.append(t)
            tokens = pad_rows(np.concatenate(both), 2 * batch_size)
            lp = np.asarray(log_probs(model, params, jnp.asarray(tokens)))
            ll = np.take_along_axis(lp[:, :-1], tokens[:, 1:, None], -1)[..., 0].astype(np.float64).sum(1)
            scores[idx] = ll[len(idx):2 * len(idx)] - ll[:len(idx)]
        bar.update(len(idx))
    bar.close()
    return scores
