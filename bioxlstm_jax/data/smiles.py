"""SMILES tokenisation, vocabularies and readers for Chem-xLSTM.

Two tokenisers, both at Chem-xLSTM's granularity (``[`` and ``]`` are tokens of their own, bracket
atoms are split into isotope digits, element, chirality, hydrogens and charge):

* ``"bioxlstm"`` (default): every SMILES character is covered. Inside brackets any element of the
  periodic table is one token (two-letter symbols first, e.g. ``[Hg]``, ``[Zr]``, ``[Sn]``); outside
  them only the organic subset can appear (``Cl``, ``Br``, ``B C N O P S F I``, aromatic
  ``b c n o p s``), so ``CSc1ccccc1`` is S then aromatic c, as SMILES means.
* ``"reference"``: Chem-xLSTM's ``segmentation_sq`` regex (``chemxlstm/smiles_utils.py``), for
  converted checkpoints. As coded there, its backslash alternative matches two backslashes and its
  element list omits many elements, so a single ``\\`` (cis/trans) or ``[Hg]`` is silently dropped
  (45 of 100 ICST lines do not round-trip). Here that is an error naming the characters, never a
  silent change.

Both raise ``ValueError`` on a character no token covers, naming its position.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from bioxlstm_jax.data.formats import TextFile, open_text
from bioxlstm_jax.io import write_json

__all__ = ["PAD", "BEG", "END", "TOKENIZERS", "tokenize", "SmilesVocab", "read_smiles"]

PAD, BEG, END = "[PAD]", "[BEG]", "[END]"
TOKENIZERS = ("bioxlstm", "reference")

_ELEMENTS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr Rb Sr Y "
    "Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W "
    "Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf Es Fm Md No Lr Rf Db Sg Bh Hs Mt "
    "Ds Rg Cn Nh Fl Mc Lv Ts Og"
).split()
_AROMATIC_IN_BRACKETS = ("se", "te", "as", "si", "b", "c", "n", "o", "p", "s")
_by_length = sorted(_ELEMENTS + list(_AROMATIC_IN_BRACKETS), key=len, reverse=True)
_BRACKET_RE = re.compile("|".join(re.escape(e) for e in _by_length) + r"|\*|@|\d|\+|-|:")
_ORGANIC_RE = re.compile(r"Cl|Br|[BCNOSPFI]|[bcnosp]|\*|%\d{2}|\d|[().=#\-+\\/:~@?>$]")

# Chem-xLSTM's segmentation_sq, as coded (note r"\\\\": two backslashes).
_REFERENCE_ELEMENTS = (
    r"(?<=\[)Cs(?=\])|Si|Xe|Ba|Rb|Ra|Sr|Dy|Li|Kr|Bi|Mn|He|Am|Pu|Cm|Pm|Ne|Th|Ni|Pr|Fe|Lu|Pa|Fm|Tm|Tb|Er|Be|Al|"
    r"Gd|Eu|te|As|Pt|Lr|Sm|Ca|La|Ti|Te|Ac|Cf|Rf|Na|Cu|Au|Nd|Ag|Se|se|Zn|Mg|Br|Cl|Pb|Sb|U|V|K|C|B|H|N|O|S|P|F|"
    r"I|b|c|n|o|s|p"
)
_REFERENCE_RE = re.compile(
    rf"(\[|\]|{_REFERENCE_ELEMENTS}|" + r"\(|\)|\.|=|#|-|\+|\\\\|\/|:|~|@|\?|>|\*|\$|\%\d{2}|\d)"
)


def _scan(text: str, pattern: re.Pattern, start: int, end: int, out: list[str], smiles: str) -> None:
    pos = start
    while pos < end:
        match = pattern.match(text, pos, end)
        if match is None:
            raise ValueError(f"SMILES {smiles!r}: no token covers {text[pos]!r} at position {pos}")
        out.append(match.group())
        pos = match.end()


def tokenize(smiles: str, mode: str = "bioxlstm") -> list[str]:
    """SMILES string -> tokens (without ``[BEG]``/``[END]``); ``"".join(tokens) == smiles``."""
    if mode not in TOKENIZERS:
        raise ValueError(f"tokenizer mode must be one of {TOKENIZERS}, got {mode!r}")
    if mode == "reference":
        tokens = _REFERENCE_RE.findall(smiles)
        if "".join(tokens) != smiles:
            raise ValueError(f"SMILES {smiles!r}: Chem-xLSTM's tokenizer would silently drop part of it "
                             f"(it keeps {''.join(tokens)!r}); use mode='bioxlstm'")
        return tokens
    tokens: list[str] = []
    pos = 0
    for bracket in re.finditer(r"\[[^\[\]]*\]", smiles):
        _scan(smiles, _ORGANIC_RE, pos, bracket.start(), tokens, smiles)
        tokens.append("[")
        _scan(smiles, _BRACKET_RE, bracket.start() + 1, bracket.end() - 1, tokens, smiles)
        tokens.append("]")
        pos = bracket.end()
    _scan(smiles, _ORGANIC_RE, pos, len(smiles), tokens, smiles)  # an unpaired bracket raises here
    return tokens


class SmilesVocab:
    """Token <-> id map. ``[PAD]`` is 0; ids follow first appearance in the training data, as
    Chem-xLSTM's ``learn_label_encoding`` (``[BEG]`` is 1 and ``[END]`` comes after the first
    molecule's tokens). Saved as JSON with every checkpoint (``vocab.json``).
    """

    def __init__(self, tokens: Iterable[str], mode: str = "bioxlstm"):
        self.tokens = tuple(tokens)
        if mode not in TOKENIZERS:
            raise ValueError(f"tokenizer mode must be one of {TOKENIZERS}, got {mode!r}")
        if not self.tokens or self.tokens[0] != PAD or BEG not in self.tokens or END not in self.tokens:
            raise ValueError(f"a SMILES vocabulary starts with {PAD} and holds {BEG} and {END}")
        if len(set(self.tokens)) != len(self.tokens):
            raise ValueError("a SMILES vocabulary holds each token once")
        self.mode = mode
        self.ids = {t: i for i, t in enumerate(self.tokens)}
        self.pad_id, self.beg_id, self.end_id = self.ids[PAD], self.ids[BEG], self.ids[END]

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other) -> bool:
        return isinstance(other, SmilesVocab) and (self.tokens, self.mode) == (other.tokens, other.mode)

    def __repr__(self) -> str:
        return f"SmilesVocab({len(self)} tokens, mode={self.mode!r})"

    @classmethod
    def learn(cls, smiles: Iterable[str], mode: str = "bioxlstm") -> "SmilesVocab":
        """The vocabulary of ``smiles`` in first-appearance order of ``[BEG] + tokens + [END]``."""
        seen = {PAD: 0}
        for s in smiles:
            for token in (BEG, *tokenize(s, mode), END):
                seen.setdefault(token, len(seen))
        return cls(seen, mode)

    @classmethod
    def learn_file(cls, path: str | os.PathLike, mode: str = "bioxlstm") -> "SmilesVocab":
        """``learn`` over a SMILES file (``read_smiles``); errors name the file and line."""
        def smiles():
            for where, s in read_smiles(path):
                try:
                    tokenize(s, mode)
                except ValueError as e:
                    raise ValueError(f"{where}: {e}") from None
                yield s
        return cls.learn(smiles(), mode)

    def encode(self, smiles: str, *, add_special: bool = True) -> list[int]:
        """``[BEG] + tokens + [END]`` as ids. A token outside the vocabulary raises ``ValueError``."""
        tokens = tokenize(smiles, self.mode)
        missing = [t for t in tokens if t not in self.ids]
        if missing:
            raise ValueError(f"SMILES {smiles!r}: tokens {sorted(set(missing))} are not in the vocabulary")
        ids = [self.ids[t] for t in tokens]
        return [self.beg_id, *ids, self.end_id] if add_special else ids

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> SMILES: stops at the first ``[END]``, drops ``[BEG]`` and ``[PAD]``."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.end_id:
                break
            if i not in (self.beg_id, self.pad_id):
                out.append(self.tokens[i])
        return "".join(out)

    def to_json(self) -> dict:
        return {"mode": self.mode, "tokens": list(self.tokens)}

    @classmethod
    def from_json(cls, data: dict) -> "SmilesVocab":
        """Ours (``{"mode", "tokens"}``), Chem-xLSTM's ``init_arguments.json`` (its ``token2label``), or
        a bare ``token2label`` mapping (the ``vocab.json`` of ``python -m bioxlstm_jax.convert``)."""
        if "tokens" in data:
            return cls(data["tokens"], data.get("mode", "bioxlstm"))
        token2label = data.get("token2label", data)
        if not token2label or not all(isinstance(v, int) for v in token2label.values()):
            raise ValueError("a SMILES vocabulary JSON holds 'tokens', or a token2label mapping of ints")
        if sorted(token2label.values()) != list(range(len(token2label))):
            raise ValueError("token2label ids must be 0..n-1, each once")
        return cls(sorted(token2label, key=token2label.get), "reference")

    def save(self, path: str | os.PathLike) -> None:
        write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SmilesVocab":
        """Reads ``save``'s JSON, or Chem-xLSTM's ``init_arguments.json`` (its ``token2label``)."""
        return cls.from_json(json.loads(Path(path).read_text()))


def _text_members(path: Path) -> Iterator[tuple[str, io.TextIOBase]]:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            members = [m for m in z.namelist() if not m.endswith("/") and not m.startswith("__MACOSX")]
            if not members:
                raise ValueError(f"{path}: the zip archive holds no file")
            for member in members:
                with z.open(member) as raw:
                    yield f"{path}/{member}", TextFile(f"{path}/{member}", raw)
    else:
        with open_text(path) as f:
            yield str(path), f


def read_smiles(path: str | os.PathLike, column: str | None = None) -> Iterator[tuple[str, str]]:
    """Yields ``("<file>:<line>", smiles)`` from a SMILES file.

    Formats (gzip transparent; a .zip is read member by member):
    * ``.csv`` / ``.tsv``: the column ``column``, else the one named ``smiles`` in any case;
    * anything else (``.txt``, ``.smi``): one entry per line, its first whitespace-separated field
      (``.smi`` lines may carry a name after the SMILES); a first line ``SMILES`` is a header.
    Lines with ``.``-joined molecules (ICST domains) are yielded whole. Empty lines are skipped;
    a missing column or a file without any SMILES raises ``ValueError`` naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such SMILES file")
    name = path.name.lower().removesuffix(".gz").removesuffix(".zip")
    count = 0
    for where, f in _text_members(path):
        member = where.lower().removesuffix(".gz")
        if name.endswith((".csv", ".tsv")) or member.endswith((".csv", ".tsv")):
            delimiter = "\t" if (name + member).endswith(".tsv") or ".tsv" in name else ","
            reader = csv.reader(f, delimiter=delimiter)
            header = next(reader, None)
            if header is None:
                continue
            lowered = [h.strip().lower() for h in header]
            want = (column or "smiles").lower()
            if want not in lowered:
                raise ValueError(f"{where}:1: expected a column {column or 'SMILES'!r}, got columns {header}")
            col = lowered.index(want)
            for lineno, row in enumerate(reader, 2):
                if not row or not "".join(row).strip():
                    continue
                if col >= len(row) or not row[col].strip():
                    raise ValueError(f"{where}:{lineno}: no value in column {header[col]!r}")
                count += 1
                yield f"{where}:{lineno}", row[col].strip()
        else:
            for lineno, line in enumerate(f, 1):
                fields = line.split()
                if not fields or (lineno == 1 and fields[0].lower() == "smiles"):
                    continue
                count += 1
                yield f"{where}:{lineno}", fields[0]
    if count == 0:
        raise ValueError(f"{path}: no SMILES found")
