"""Readers of sequence files (gzip transparent). Errors name the file, the line and what was expected."""

from __future__ import annotations

import gzip
import os
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

__all__ = ["open_text", "TextFile", "read_fasta", "read_genome_records", "GENOME_ALPHABET", "read_lines", "read_msa",
           "msa_format", "MSA_FORMATS", "RESIDUES"]

# Genome FASTA letters: bases in either case (lower case = soft-masked repeats) and IUPAC ambiguity
# codes (which DNA-xLSTM's tokenizer reads as N).
GENOME_ALPHABET = "ACGTNacgtnRYKMSWBDHVrykmswbdhv"


def _what_went_wrong(e: BaseException) -> str:
    if isinstance(e, UnicodeDecodeError):
        return f"not UTF-8 text (byte 0x{e.object[e.start]:02x}; a binary file?)"
    if isinstance(e, EOFError):
        return "the gzip stream ends early (truncated file?)"
    if isinstance(e, zipfile.BadZipFile):
        return f"corrupt zip member ({e})"
    return f"corrupt gzip data ({e})"


class TextFile:
    """Lines of a text file (``open_text``) read from a binary stream ``raw``: UTF-8, a byte-order mark
    skipped, CRLF line ends read as LF. A decoding, gzip, zip or truncation error raises ``ValueError``
    naming the file and the line it happened on. Iterate it, or ``readline()`` it;
    ``lineno`` is the number of the last line read."""

    def __init__(self, path: Path | str, raw):
        self.path, self._raw, self.lineno = path, raw, 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self._raw.close()

    def __iter__(self):
        return self

    def __next__(self) -> str:
        where = f"{self.path}:{self.lineno + 1}"
        try:
            data = self._raw.readline()
            if not data:
                raise StopIteration
            if self.lineno == 0 and data.startswith(b"\xef\xbb\xbf"):
                data = data[3:]
            line = data.decode("utf-8")
        except (UnicodeDecodeError, EOFError, zlib.error, gzip.BadGzipFile, zipfile.BadZipFile) as e:
            raise ValueError(f"{where}: {_what_went_wrong(e)}") from None
        self.lineno += 1
        return line[:-2] + "\n" if line.endswith("\r\n") else line

    def readline(self) -> str:
        return next(self, "")


def open_text(path: str | os.PathLike) -> TextFile:
    """Opens a text file for reading (``TextFile``), gunzipping when it starts with the gzip magic bytes."""
    path = Path(path)
    with path.open("rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return TextFile(path, gzip.open(path, "rb") if gz else path.open("rb"))


def read_fasta(path: str | os.PathLike, alphabet: str | None = None) -> Iterator[tuple[str, str]]:
    """Yields ``(header, sequence)`` per record (header without '>', sequence lines joined).

    Raises ``ValueError("<file>:<line>: ...")`` on text before the first header, an empty sequence,
    or (with ``alphabet``) a character outside it.
    """
    allowed = set(alphabet) if alphabet else None
    header, parts, header_line = None, [], 0
    with open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            if line.startswith(">"):
                if header is not None:
                    if not parts:
                        raise ValueError(f"{path}:{header_line}: record {header!r} has an empty sequence")
                    yield header, "".join(parts)
                header, parts, header_line = line[1:].strip(), [], lineno
                continue
            if header is None:
                raise ValueError(f"{path}:{lineno}: expected a FASTA header line starting with '>'")
            if allowed is not None:
                bad = set(line) - allowed
                if bad:
                    raise ValueError(f"{path}:{lineno}: characters {''.join(sorted(bad))!r} are not in the "
                                     f"alphabet {alphabet!r}")
            parts.append(line)
    if header is None:
        raise ValueError(f"{path}: no FASTA record (expected a header line starting with '>')")
    if not parts:
        raise ValueError(f"{path}:{header_line}: record {header!r} has an empty sequence (truncated file?)")
    yield header, "".join(parts)


def read_genome_records(path: str | os.PathLike) -> Iterator[tuple[str, str]]:
    """``(chromosome, sequence)`` of a genome FASTA in file order (plain, gzip or bgzip; soft-masked
    lower case and N runs kept as they are). The chromosome name is the header's first word. Raises
    ``ValueError("<file>:<line>: ...")`` on a character outside ``GENOME_ALPHABET`` or text before the
    first header, and ``ValueError`` on an empty record or a repeated chromosome name."""
    seen = set()
    for header, seq in read_fasta(path, alphabet=GENOME_ALPHABET):
        name = header.split()[0] if header.split() else ""
        if not name:
            raise ValueError(f"{path}: a FASTA header has no name")
        if name in seen:
            raise ValueError(f"{path}: chromosome {name!r} appears twice")
        seen.add(name)
        yield name, seq


def read_lines(path: str | os.PathLike) -> Iterator[tuple[str, str]]:
    """Yields ``("<file stem>:<line>", text)`` for each non-empty line (e.g. one SMILES per line)."""
    path = Path(path)
    with open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if line:
                yield f"{path.name}:{lineno}", line


MSA_FORMATS = ("a3m", "a2m", "fasta", "stockholm")
_MSA_SUFFIXES = {".a3m": "a3m", ".a2m": "a2m", ".fasta": "fasta", ".fa": "fasta", ".faa": "fasta", ".fas": "fasta",
                 ".afa": "fasta", ".sto": "stockholm", ".stk": "stockholm", ".stockholm": "stockholm"}
# Alignment rows: residue letters (upper: match / lower: a3m insertion), gaps '-' and '.', '*' (stop). The
# letters are those of the protein vocabulary (every letter but J, which no Prot-xLSTM token reads).
RESIDUES = "ACDEFGHIKLMNPQRSTVWYXBUZO"
_MSA_CHARS = frozenset(RESIDUES + RESIDUES.lower() + "-.*")


def msa_format(path: str | os.PathLike) -> str:
    """The MSA format from the file name (``.a3m``, ``.a2m``, ``.fasta``/``.fa``, ``.sto``; ``.gz`` ignored)."""
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    fmt = _MSA_SUFFIXES.get(Path(name).suffix)
    if fmt is None:
        raise ValueError(f"{path}: cannot tell the MSA format from the name; expected one of "
                         f"{sorted(_MSA_SUFFIXES)} (optionally .gz), or pass the format")
    return fmt


def _check_row(path, lineno, text):
    bad = set(text) - _MSA_CHARS
    if bad:
        raise ValueError(f"{path}:{lineno}: characters {''.join(sorted(bad))!r} are not allowed in an alignment "
                         f"row (expected residues {RESIDUES} in either case, '-', '.' or '*')")


def _match_columns(row: str) -> int:
    """Match columns of an a3m / a2m row: upper-case residues and '-' (insertions are lower case and '.')."""
    return sum(1 for c in row if not c.islower() and c != ".")


def _read_fasta_like(path, allow_comments: bool) -> list[tuple[str, str]]:
    """Records of a FASTA-like MSA; with ``allow_comments`` (a3m / a2m) every row must have the query's
    number of match columns."""
    records, header, parts, header_line = [], None, [], 0
    width = None

    def add():
        nonlocal width
        row = "".join(parts)
        if allow_comments:
            n = _match_columns(row)
            width = n if width is None else width
            if n != width:
                raise ValueError(f"{path}:{header_line}: row {header!r} has {n} match columns (upper-case residues "
                                 f"and '-'), the query {width} (a row cut short?)")
        records.append((header, row))

    with open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            if line.startswith("#") and header is None and allow_comments:
                continue  # hhblits / ColabFold a3m files may start with a '#' line
            if line.startswith(">"):
                if header is not None:
                    if not parts:
                        raise ValueError(f"{path}:{header_line}: record {header!r} has an empty sequence")
                    add()
                header, parts, header_line = line[1:].strip(), [], lineno
                continue
            if header is None:
                raise ValueError(f"{path}:{lineno}: expected a header line starting with '>'")
            _check_row(path, lineno, line)
            parts.append(line)
    if header is None:
        raise ValueError(f"{path}: no sequence record (expected a header line starting with '>')")
    if not parts:
        raise ValueError(f"{path}:{header_line}: record {header!r} has an empty sequence (truncated file?)")
    add()
    return records


def _read_stockholm(path) -> list[tuple[str, str]]:
    rows: dict[str, list[str]] = {}
    first_line: dict[str, int] = {}
    started = ended = False
    with open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if not started:
                if not line.startswith("# STOCKHOLM"):
                    raise ValueError(f"{path}:{lineno}: expected the header '# STOCKHOLM 1.0'")
                started = True
                continue
            if line.startswith("//"):
                ended = True
                break
            if line.startswith("#"):
                continue  # #=GF / #=GS / #=GR / #=GC annotations
            fields = line.split()
            if len(fields) != 2:
                raise ValueError(f"{path}:{lineno}: expected '<name> <aligned sequence>', got {len(fields)} fields")
            name, text = fields
            _check_row(path, lineno, text)
            rows.setdefault(name, []).append(text)
            first_line.setdefault(name, lineno)
    if not started:
        raise ValueError(f"{path}: empty file (expected '# STOCKHOLM 1.0')")
    if not ended:
        raise ValueError(f"{path}: the alignment does not end with '//' (truncated file?)")
    if not rows:
        raise ValueError(f"{path}: the alignment has no sequences")
    records = [(name, "".join(parts)) for name, parts in rows.items()]
    width = len(records[0][1])
    for name, seq in records:
        if len(seq) != width:
            raise ValueError(f"{path}:{first_line[name]}: row {name!r} has {len(seq)} columns, the first row "
                             f"{width} (truncated block?)")
    return records


def read_msa(path: str | os.PathLike, fmt: str = "auto") -> list[tuple[str, str]]:
    """``[(name, aligned row), ...]`` of an A3M, A2M, aligned FASTA or Stockholm file (gzip transparent).

    Rows are returned as written: upper-case match columns, lower-case insertions (a3m / a2m), gaps
    '-' and '.'; ``protein.clean_sequence`` turns a row into the unaligned protein the way
    Prot-xLSTM does. The first record is the query. Raises ``ValueError("<file>:<line>: ...")`` on
    a missing header, an empty sequence, characters other than ``RESIDUES`` / '-' / '.' / '*', an
    a3m / a2m row whose match columns are not the query's, ragged Stockholm rows or a Stockholm file
    without its closing '//'.
    """
    fmt = msa_format(path) if fmt == "auto" else fmt
    if fmt not in MSA_FORMATS:
        raise ValueError(f"unknown MSA format {fmt!r}; expected one of {MSA_FORMATS}")
    if fmt == "stockholm":
        return _read_stockholm(path)
    return _read_fasta_like(path, allow_comments=fmt in ("a3m", "a2m"))
