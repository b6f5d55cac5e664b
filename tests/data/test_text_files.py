"""Every reader takes UTF-8 with a byte-order mark and CRLF line ends as the plain file, and names the
file and line of a decoding, gzip or zip error."""

import gzip
import zipfile

import pytest

from bioxlstm_jax.assets import asset_path
from bioxlstm_jax.data.dna import read_bed, read_labeled_sequences
from bioxlstm_jax.data.formats import read_fasta, read_msa
from bioxlstm_jax.data.smiles import read_smiles
from bioxlstm_jax.evaluation.proteingym import read_dms
from bioxlstm_jax.inference.dna import read_variants
from tests.helpers import data_path

BLAT = asset_path("protein", "BLAT_ECOLX")
SOURCES = {  # reader, a real file, its name
    "fasta": (lambda p: list(read_fasta(p)), data_path("protein", "globins45.fa"), "x.fa"),
    "a3m": (read_msa, BLAT / "BLAT_ECOLX_ColabFold_2202_poet.a3m.gz", "x.a3m"),
    "dms": (lambda p: [{k: v for k, v in r.items() if k != "_line"} for r in read_dms(p)],
            BLAT / "BLAT_ECOLX_Jacquier_2013.csv.gz", "x.csv"),
    "smiles": (lambda p: [s for _, s in read_smiles(p)], data_path("chem", "moses_test_1k.csv.gz"), "x.csv"),
    "labels": (lambda p: (lambda s, y: (s, y.tolist()))(*read_labeled_sequences(p)),
               data_path("dna", "gue_tf0_train_1200.csv.gz"), "x.csv"),
}


def plain_text(path) -> str:
    data = open(path, "rb").read()
    return (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).decode()


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_bom_and_crlf_read_as_the_plain_file(name, tmp_path):
    read, source, filename = SOURCES[name]
    text = plain_text(source)
    plain, odd = tmp_path / filename, tmp_path / ("bom_crlf_" + filename)
    plain.write_text(text)
    odd.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    assert read(odd) == read(plain)


def test_bed_and_variants_with_bom_and_crlf(tmp_path):
    bed, vcf = tmp_path / "a.bed", tmp_path / "v.tsv"
    bed.write_bytes(b"\xef\xbb\xbfchr2\t10\t2000\tvalid\r\nchr2\t50\t90\r\n")
    assert read_bed(bed) == [("chr2", 10, 2000, "valid"), ("chr2", 50, 90, "train")]
    vcf.write_bytes(b"\xef\xbb\xbfchrom\tpos\tref\talt\tlabel\r\nchr2\t7\tA\tG\t1\r\n")
    (v,) = read_variants(vcf)
    assert (v.chrom, v.pos, v.ref, v.alt, v.fields) == ("chr2", 7, "A", "G", {"label": "1"})


def test_decoding_gzip_and_zip_errors_name_the_file_and_line(tmp_path):
    fa = tmp_path / "bad.fa"
    fa.write_bytes(b">a\nACGT\n>b\nAC\xff\xfeGT\n")
    with pytest.raises(ValueError, match=r"bad\.fa:4: not UTF-8 text \(byte 0xff; a binary file\?\)"):
        list(read_fasta(fa))
    gz = tmp_path / "cut.fa.gz"
    gz.write_bytes(gzip.compress(plain_text(data_path("protein", "globins45.fa")).encode())[:-40])
    with pytest.raises(ValueError, match=r"cut\.fa\.gz:\d+: the gzip stream ends early"):
        list(read_fasta(gz))
    zipped = tmp_path / "s.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("mols.txt", "CCO\nCC\xe9N\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"s\.zip/mols\.txt:2: not UTF-8 text"):
        list(read_smiles(zipped))
