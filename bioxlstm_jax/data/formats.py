"""Readers of sequence files (gzip transparent). Errors name the file, the line and what was expected."""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["open_text", "read_fasta", "read_lines"]


def open_text(path: str | os.PathLike):
    """Opens a text file, gunzipping when it starts with the gzip magic bytes."""
    path = Path(path)
    with path.open("rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rt") if gz else path.open("rt")


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


def read_lines(path: str | os.PathLike) -> Iterator[tuple[str, str]]:
    """Yields ``("<file stem>:<line>", text)`` for each non-empty line (e.g. one SMILES per line)."""
    path = Path(path)
    with open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if line:
                yield f"{path.name}:{lineno}", line
