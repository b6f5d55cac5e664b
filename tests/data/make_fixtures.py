"""Cut the test fixtures under tests/data/{chem,protein,dna}/ and the shipped GUE task and ProteinGym
rows under bioxlstm_jax/assets/ from the project's shared real data (see tests/data/README.md).

    BIOXLSTM_SHARED_DATA=../shared/data python tests/data/make_fixtures.py

Deterministic: the first records of each file (per label or task where a test needs each class), gzip
with mtime 0, so re-running reproduces the committed bytes. Not run by the tests.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ASSETS = ROOT / "bioxlstm_jax" / "assets"


def write_gz(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
        f.write(text.encode())


def head_lines(path: Path, n: int, header: bool = True) -> str:
    """The first n records (plus the header line) of a gzip text table."""
    with gzip.open(path, "rt", newline="") as f:
        return "".join(line for _, line in zip(range(n + header), f))


def first_per_key(path: Path, n: int, column: str, delimiter: str) -> str:
    """The header plus the first n rows of each value of ``column``, in file order."""
    with gzip.open(path, "rt", newline="") as f:
        header = f.readline()
        names = next(csv.reader([header], delimiter=delimiter))
        k = names.index(column)
        seen, out = {}, [header]
        for line in f:
            key = next(csv.reader([line], delimiter=delimiter))[k]
            if seen.get(key, 0) < n:
                seen[key] = seen.get(key, 0) + 1
                out.append(line)
    return "".join(out)


def first_fasta_records(path: Path, n: int) -> str:
    out, count = [], 0
    with gzip.open(path, "rt") as f:
        for line in f:
            if line.startswith(">"):
                count += 1
                if count > n:
                    break
            out.append(line)
    return "".join(out)


def main(shared: Path) -> None:
    chem, prot, dna = HERE / "chem", HERE / "protein", HERE / "dna"
    write_gz(chem / "moses_test_1k.csv.gz", head_lines(shared / "chem/moses/test.csv.gz", 1000))
    for name in ("hmmer_tutorial/globins4.sto", "hmmer_tutorial/globins45.fa", "evcouplings_example_aln.a2m"):
        prot.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared / "protein/msa" / name, prot / Path(name).name)
    write_gz(prot / "uniprot_500.fasta.gz",
             first_fasta_records(shared / "protein/sequences/mmseqs2_example_DB_uniprot20k.fasta.gz", 500))
    dna.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shared / "dna/hg38_fragments/hg38_chr1_1-1000000.fa.gz", dna / "hg38_chr1_1-1000000.fa.gz")
    write_gz(dna / "gue_tf0_train_1200.csv.gz", head_lines(shared / "dna/gue/tf/0/train.csv.gz", 1200))
    write_gz(dna / "gb_promoters_nontata_test_400.tsv.gz",
             first_per_key(shared / "dna/genomic_benchmarks/sequences/fmhub_promoters_nontata_test.tsv.gz", 200,
                           "label", "\t"))
    write_gz(dna / "nt_toy_20_per_task.tsv.gz",
             first_per_key(shared / "dna/nucleotide_transformer/fmhub_nt_toy_train_1500.tsv.gz", 20, "task", "\t"))
    # shipped (users need them too): the whole GUE prom_300_tata task and ProteinGym's BLAT_ECOLX rows
    for split in ("train", "dev", "test"):
        (ASSETS / "dna/gue_prom_300_tata").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared / f"dna/gue/prom/prom_300_tata/{split}.csv.gz",
                        ASSETS / f"dna/gue_prom_300_tata/{split}.csv.gz")
    reference = (shared / "protein/proteingym_reference/DMS_substitutions.csv").read_text()
    lines = io.StringIO(reference).readlines()
    write_gz(ASSETS / "protein/BLAT_ECOLX/DMS_substitutions_BLAT_ECOLX.csv.gz",
             "".join([lines[0]] + [line for line in lines[1:] if line.split(",")[3] == "BLAT_ECOLX"]))


if __name__ == "__main__":
    root = os.environ.get("BIOXLSTM_SHARED_DATA")
    if not root:
        sys.exit("set BIOXLSTM_SHARED_DATA to the shared data folder (e.g. ../shared/data)")
    main(Path(root))
