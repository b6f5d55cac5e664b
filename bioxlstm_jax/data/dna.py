"""DNA-xLSTM data: the 12-token vocabulary, genome FASTA, windows, reverse complements and MLM masking.

Vocabulary (DNA-xLSTM / Caduceus ``CaduceusTokenizer``): ``[CLS]`` 0, ``[SEP]`` 1, ``[BOS]`` 2,
``[MASK]`` 3, ``[PAD]`` 4, ``[RESERVED]`` 5, ``[UNK]`` 6, A 7, C 8, G 9, T 10, N 11; the complement map
swaps A/T and C/G and keeps the rest (``COMPLEMENT``, also the ``complement_map`` of the DNA presets).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np

from bioxlstm_jax.data.formats import read_genome_records

__all__ = ["VOCAB", "CLS", "SEP", "BOS", "MASK", "PAD", "UNK", "BASE_IDS", "COMPLEMENT", "encode", "decode",
           "reverse_complement", "rc_augment", "read_genome", "Genome", "GenomeWindows", "genome_windows", "read_bed",
           "bed_windows", "mlm_mask", "read_labeled_sequences", "OBJECTIVES", "lm_example"]

OBJECTIVES = ("mlm", "clm")

VOCAB = ("[CLS]", "[SEP]", "[BOS]", "[MASK]", "[PAD]", "[RESERVED]", "[UNK]", "A", "C", "G", "T", "N")
CLS, SEP, BOS, MASK, PAD, RESERVED, UNK = range(7)
BASE_IDS = {"A": 7, "C": 8, "G": 9, "T": 10, "N": 11}
COMPLEMENT = (0, 1, 2, 3, 4, 5, 6, 10, 9, 8, 7, 11)  # token id -> id of its complement
_COMPLEMENT = np.asarray(COMPLEMENT, np.int32)

_TABLE = np.full(256, UNK, np.int32)
for _base, _id in BASE_IDS.items():
    _TABLE[ord(_base)] = _id
for _code in "RYKMSWBDHV":
    _TABLE[ord(_code)] = BASE_IDS["N"]


def encode(seq: str, *, uppercase: bool = True) -> np.ndarray:
    """Bases -> ids (int32). ``uppercase=True`` (pretraining tokenizer) reads soft-masked bases as
    bases; ``False`` (the reference's downstream ``CharacterTokenizer``) maps lower case to ``[UNK]``.
    IUPAC ambiguity codes map to N; any other character to ``[UNK]``."""
    if uppercase:
        seq = seq.upper()
    return _TABLE[np.frombuffer(seq.encode("latin-1"), np.uint8)]


def decode(ids: Iterable[int]) -> str:
    return "".join(VOCAB[i] if i >= 7 else f"<{VOCAB[i][1:-1]}>" for i in np.asarray(ids).tolist())


def reverse_complement(ids: np.ndarray, axis: int = -1) -> np.ndarray:
    """Reverse complement of id arrays along ``axis`` (specials stay themselves)."""
    return np.flip(_COMPLEMENT[np.asarray(ids)], axis=axis)


def rc_augment(rng: np.random.Generator, ids: np.ndarray, *aligned: np.ndarray, p: float = 0.5) -> tuple:
    """RC augmentation of one example: with probability ``p``, ``ids`` (L,) reverse-complemented and each
    ``aligned`` per-position array (e.g. a padding mask) reversed; else all unchanged. Returns
    ``(ids, *aligned)``. One ``rng.random()`` draw per call."""
    if rng.random() < p:
        return (reverse_complement(ids), *(np.ascontiguousarray(a[::-1]) for a in aligned))
    return (ids, *aligned)


def read_genome(path: str | os.PathLike) -> dict[str, str]:
    """``{chromosome: sequence}`` of a genome FASTA in memory (see ``read_genome_records``)."""
    return dict(read_genome_records(path))


class Genome:
    """Random access to a genome FASTA prepared once as a TFDS dataset of blocks
    (``tfds_builders.genome_blocks``): ``sizes`` ``{chrom: bp}``, ``fetch(chrom, start, length)``."""

    def __init__(self, fasta: str | os.PathLike, data_dir: str | os.PathLike | None = None):
        from bioxlstm_jax.data.tfds_builders import GENOME_BLOCK, genome_blocks

        self.fasta = str(fasta)
        self._source = genome_blocks(fasta, data_dir)
        self._block = GENOME_BLOCK
        self.sizes, self._first = {}, {}
        i = 0
        while i < len(self._source):  # one read per chromosome: blocks are stored in file order
            r = self._source[i]
            chrom, size = _text(r["chrom"]), int(r["chrom_length"])
            if int(r["offset"]) != 0 or chrom in self.sizes:
                raise RuntimeError(f"{fasta}: the prepared genome blocks are out of order; delete the prepared "
                                   "dataset (genome_*) under the TFDS data dir and re-run")
            self.sizes[chrom], self._first[chrom] = size, i
            i += -(-size // GENOME_BLOCK)

    def fetch(self, chrom: str, start: int, length: int) -> str:
        """Bases ``[start, start + length)`` of ``chrom`` (0-based), case kept."""
        if chrom not in self.sizes:
            raise KeyError(f"{self.fasta}: no chromosome {chrom!r}")
        if start < 0 or start + length > self.sizes[chrom]:
            raise ValueError(f"{chrom}:{start}-{start + length} is outside the chromosome (0-{self.sizes[chrom]})")
        b0, b1 = start // self._block, (start + length - 1) // self._block
        text = "".join(_text(self._source[self._first[chrom] + b]["sequence"]) for b in range(b0, b1 + 1))
        return text[start - b0 * self._block:][:length]


def _text(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


class GenomeWindows:
    """Random-access source of windows ``{"chrom", "start", "sequence"}`` (``len`` and ``[i]``) over a
    ``Genome``, for ``bioxlstm_jax.data.lm_batches``."""

    def __init__(self, genome: Genome, starts: list[tuple[str, int]], length: int):
        self.genome, self.starts, self.length = genome, list(starts), int(length)

    def __len__(self):
        return len(self.starts)

    def __getitem__(self, i):
        chrom, start = self.starts[i]
        return {"chrom": chrom, "start": start, "sequence": self.genome.fetch(chrom, start, self.length)}


def genome_windows(fasta: str | os.PathLike, length: int, *, bed: str | os.PathLike | None = None,
                   valid_fraction: float = 0.05, min_acgt: float = 0.5,
                   data_dir: str | os.PathLike | None = None) -> dict[str, GenomeWindows]:
    """``{split: GenomeWindows}`` of windows of ``length`` bp.

    With ``bed``: DNA-xLSTM's ``HG38Dataset`` windows (``bed_windows``), splits from the BED's 4th
    column. Without (our rule, for a bare genome): each chromosome tiled by non-overlapping windows,
    windows with less than ``min_acgt`` A/C/G/T (e.g. N runs) dropped, and the last ``valid_fraction``
    of each chromosome's windows (at least one when it has two) held out as ``"valid"``.
    """
    genome = Genome(fasta, data_dir)
    if bed is not None:
        splits: dict[str, list] = {}
        for lineno, row in read_bed(bed, line_numbers=True):
            try:
                windows = bed_windows([row], length, genome.sizes)
            except ValueError as e:
                raise ValueError(f"{bed}:{lineno}: {e} (genome {fasta})") from None
            splits.setdefault(row[3], []).extend(windows)
        return {split: GenomeWindows(genome, starts, length) for split, starts in splits.items()}
    if not 0 <= valid_fraction < 1:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    train, valid = [], []
    for chrom, size in genome.sizes.items():
        n = size // length
        if n == 0:
            continue
        seq = np.frombuffer(genome.fetch(chrom, 0, n * length).upper().encode("latin-1"), np.uint8)
        acgt = np.isin(seq, np.frombuffer(b"ACGT", np.uint8)).reshape(n, length).mean(1)
        starts = [(chrom, k * length) for k in range(n) if acgt[k] >= min_acgt]
        held = int(np.ceil(valid_fraction * len(starts))) if len(starts) > 1 and valid_fraction else 0
        train += starts[:len(starts) - held]
        valid += starts[len(starts) - held:]
    if not train:
        raise ValueError(f"{fasta}: no window of {length} bp with at least {min_acgt:.0%} A/C/G/T")
    return {"train": GenomeWindows(genome, train, length), **({"valid": GenomeWindows(genome, valid, length)}
                                                               if valid else {})}


def read_bed(path: str | os.PathLike, line_numbers: bool = False) -> list[tuple[str, int, int, str]]:
    """Rows ``(chrom, start, end, split)`` of a BED file (0-based, end-exclusive; a 4th column is the
    split, "train" when absent). Comment, ``track`` and ``browser`` lines are skipped.
    ``line_numbers``: ``(line, row)`` pairs instead."""
    from bioxlstm_jax.data.formats import open_text

    rows = []
    with open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            fields = line.split()
            try:
                chrom, start, end = fields[0], int(fields[1]), int(fields[2])
            except (IndexError, ValueError):
                raise ValueError(f"{path}:{lineno}: expected 'chrom start end [split]', got {line.strip()!r}") from None
            if not 0 <= start < end:
                raise ValueError(f"{path}:{lineno}: expected 0 <= start < end, got {start}, {end}")
            row = (chrom, start, end, fields[3] if len(fields) > 3 else "train")
            rows.append((lineno, row) if line_numbers else row)
    if not rows:
        raise ValueError(f"{path}: no BED rows")
    return rows


def bed_windows(rows, length: int, chrom_sizes: dict[str, int], span: int = 2**20) -> list[tuple[str, int]]:
    """Window starts ``(chrom, start)`` as DNA-xLSTM's ``HG38Dataset`` samples them: every BED row is
    stretched around its centre to ``span`` bp (2^20) and cut into ``span // length`` non-overlapping
    windows of ``length`` bp, each shifted to lie inside the chromosome."""
    if length < 1 or span % length:
        raise ValueError(f"window length {length} must divide the row span {span}")
    out = []
    for chrom, start, end, *_ in rows:
        if chrom not in chrom_sizes:
            raise ValueError(f"BED row on {chrom!r}: not a chromosome of the genome ({sorted(chrom_sizes)[:5]}...)")
        size = chrom_sizes[chrom]
        if size < length:
            raise ValueError(f"chromosome {chrom!r} ({size} bp) is shorter than a window ({length} bp)")
        left = (start + end) // 2 - span // 2
        for k in range(span // length):
            s = min(max(left + k * length, 0), size - length)
            out.append((chrom, s))
    return out


def mlm_mask(tokens: np.ndarray, rng: np.random.Generator, probability: float = 0.15):
    """DNA-xLSTM's masked-LM corruption of id array ``tokens`` (any shape).

    N bases become ``[PAD]`` first (never a target). Each other token is chosen with ``probability``;
    of the chosen, 80 % become ``[MASK]``, 10 % a uniformly random id of the whole 12-token vocabulary
    (specials included, as the reference), 10 % stay. Returns ``(inputs, targets, loss_mask)``:
    targets are the original ids at chosen positions and ``[PAD]`` elsewhere; ``loss_mask`` is 1.0
    at chosen positions. (The reference can also choose ``[PAD]`` positions, which are then ignored by
    the loss but may show ``[MASK]`` in the input; here they are never chosen.)
    """
    tokens = np.where(np.asarray(tokens) == BASE_IDS["N"], PAD, tokens).astype(np.int32)
    chosen = (rng.random(tokens.shape) < probability) & (tokens != PAD)
    action = rng.random(tokens.shape)
    inputs = tokens.copy()
    inputs[chosen & (action < 0.8)] = MASK
    swap = chosen & (action >= 0.8) & (action < 0.9)
    inputs[swap] = rng.integers(0, len(VOCAB), size=int(swap.sum()))
    targets = np.where(chosen, tokens, PAD).astype(np.int32)
    return inputs, targets, chosen.astype(np.float32)


def read_labeled_sequences(path: str | os.PathLike, task: str | None = None) -> tuple[list[str], np.ndarray]:
    """``(sequences, labels)`` of a sequence-classification table (gzip transparent).

    Formats: GUE (``sequence,label`` CSV), Genomic Benchmarks (``seq<TAB>label``) and Nucleotide
    Transformer (``sequence, name, label, task``: ``task`` picks the rows of one task and is required
    when the column exists). The delimiter is a tab when the header has one, else a comma. Errors name
    the file and line: a missing column, a row with another number of fields than the header, a label
    that is not a class index (an integer >= 0), an empty sequence, a character outside A/C/G/T/N
    (either case).
    """
    import csv

    from bioxlstm_jax.data.formats import open_text

    allowed = set("ACGTNacgtn")
    sequences, labels, tasks = [], [], set()
    with open_text(path) as f:
        header_line = f.readline()
        delimiter = "\t" if "\t" in header_line else ","
        header = [h.strip().lower() for h in next(csv.reader([header_line], delimiter=delimiter))]
        seq_col = next((header.index(n) for n in ("sequence", "seq") if n in header), None)
        if seq_col is None or "label" not in header:
            raise ValueError(f"{path}:1: expected columns 'sequence' (or 'seq') and 'label', got {header}")
        label_col = header.index("label")
        task_col = header.index("task") if "task" in header else None
        if task_col is not None and task is None:
            raise ValueError(f"{path}: a multi-task table (column 'task'): choose one task")
        for lineno, row in enumerate(csv.reader(f, delimiter=delimiter), 2):
            if not row or not "".join(row).strip():
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}:{lineno}: expected {len(header)} fields as the header, got {len(row)}")
            if task_col is not None:
                tasks.add(row[task_col])
                if row[task_col] != task:
                    continue
            seq = row[seq_col].strip() if seq_col < len(row) else ""
            if not seq:
                raise ValueError(f"{path}:{lineno}: empty sequence")
            bad = set(seq) - allowed
            if bad:
                raise ValueError(f"{path}:{lineno}: characters {''.join(sorted(bad))!r} are not bases (A, C, G, T, N)")
            label = row[label_col].strip()
            if not label.isdigit():
                raise ValueError(f"{path}:{lineno}: expected a class index (an integer >= 0) as the label, got "
                                 f"{label!r}")
            labels.append(int(label))
            sequences.append(seq)
    if task_col is not None and task not in tasks:
        raise ValueError(f"{path}: no task {task!r}; tasks: {sorted(tasks)}")
    if not sequences:
        raise ValueError(f"{path}: no sequences")
    return sequences, np.asarray(labels, np.int32)


def lm_example(sequence: str, rng: np.random.Generator, *, objective: str, rc_aug: bool = False,
               mlm_probability: float = 0.15) -> dict[str, np.ndarray]:
    """A pretraining example from a window of bases (DNA-xLSTM's ``HG38Dataset``): upper-cased ids,
    reverse-complemented with probability 0.5 when ``rc_aug``, then

    * ``"clm"``: ``{"tokens"}`` = ids + ``[SEP]`` (L + 1 ids; the model reads the first L and predicts
      the last L);
    * ``"mlm"``: ``{"tokens", "targets", "loss_mask"}`` from ``mlm_mask`` (L ids each).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    ids = encode(sequence)
    if rc_aug:
        ids, = rc_augment(rng, ids)
    if objective == "clm":
        return {"tokens": np.append(ids, np.int32(SEP)).astype(np.int32)}
    inputs, targets, loss_mask = mlm_mask(ids, rng, mlm_probability)
    return {"tokens": inputs, "targets": targets, "loss_mask": loss_mask}
