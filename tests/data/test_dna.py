"""DNA data: genome FASTA on the shared hg38 fragments, vocabulary, reverse complement, BED windows and
MLM masking statistics."""

import gzip

import numpy as np
import pytest

from bioxlstm_jax.assets import asset_path
from bioxlstm_jax.data import dna
from tests.helpers import data_path

CHR1 = data_path("dna", "hg38_chr1_1-1000000.fa.gz")
CHR2 = asset_path("dna", "hg38_chr2_1-2333275.fa.gz")  # bgzip, soft-masked


def test_read_genome_plain_gzip_bgzip_soft_masked():
    chr1 = dna.read_genome(CHR1)
    chr2 = dna.read_genome(CHR2)
    assert [len(s) for s in chr1.values()] == [1_000_000] and [len(s) for s in chr2.values()] == [2_333_275]
    seq2 = next(iter(chr2.values()))
    assert any(c.islower() for c in seq2[:200_000])  # soft-masked repeats stay lower case
    for seq in (next(iter(chr1.values())), seq2):
        ids = dna.encode(seq)
        assert ids.dtype == np.int32 and not np.any(ids == dna.UNK)
        assert np.all(np.isin(ids, list(dna.BASE_IDS.values())))
    assert np.sum(dna.encode(next(iter(chr1.values()))) == dna.BASE_IDS["N"]) > 100_000  # the N run


def test_encode_modes_decode_and_reverse_complement():
    assert dna.encode("ACGTNacgtR").tolist() == [7, 8, 9, 10, 11, 7, 8, 9, 10, 11]
    assert dna.encode("ACgt", uppercase=False).tolist() == [7, 8, dna.UNK, dna.UNK]  # downstream tokenizer
    ids = np.array([dna.CLS, 7, 8, 9, 10, 11, dna.PAD])
    assert dna.decode(dna.reverse_complement(ids)) == "<PAD>NACGT<CLS>"
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 12, size=(3, 50))
    np.testing.assert_array_equal(dna.reverse_complement(dna.reverse_complement(batch)), batch)


@pytest.mark.parametrize("text,match", [
    (">chr1\nACGTX\n", r":2: characters 'X'"),
    ("ACGT\n", r":1: expected a FASTA header"),
    (">chr1\nACGT\n>chr1\nAC\n", "appears twice"),
    (">chr1\n>chr2\nAC\n", "empty sequence"),
])
def test_genome_errors_name_file_and_line(tmp_path, text, match):
    path = tmp_path / "g.fa.gz"
    with gzip.open(path, "wt") as f:
        f.write(text)
    with pytest.raises(ValueError, match=match):
        dna.read_genome(path)


def test_bed_windows_as_the_reference(tmp_path):
    bed = tmp_path / "r.bed"
    bed.write_text("track name=x\nchr1\t600000\t600100\ttrain\nchr1\t10\t20\tvalid\n")
    rows = dna.read_bed(bed)
    assert rows == [("chr1", 600000, 600100, "train"), ("chr1", 10, 20, "valid")]
    windows = dna.bed_windows(rows, 2**18, {"chr1": 1_000_000})
    assert len(windows) == 2 * 4
    starts = [s for _, s in windows]
    assert starts[:4] == [min(600050 - 2**19 + k * 2**18, 1_000_000 - 2**18) for k in range(4)]
    assert starts[4] == 0 and all(0 <= s <= 1_000_000 - 2**18 for s in starts)  # shifted inside
    (tmp_path / "bad.bed").write_text("chr1\tx\t5\n")
    with pytest.raises(ValueError, match=r"bad.bed:1: expected 'chrom start end"):
        dna.read_bed(tmp_path / "bad.bed")
    with pytest.raises(ValueError, match="not a chromosome"):
        dna.bed_windows([("chrX", 0, 10, "train")], 1024, {"chr1": 10**6})


def test_mlm_masking_statistics():
    seq = next(iter(dna.read_genome(CHR1).values()))
    tokens = dna.encode(seq[:600_000])
    inputs, targets, mask = dna.mlm_mask(tokens, np.random.default_rng(0))
    is_n = tokens == dna.BASE_IDS["N"]
    assert is_n.sum() > 1000 and not mask[is_n].any() and np.all(targets[is_n] == dna.PAD)  # N never a target
    bases = (~is_n).sum()
    chosen = mask > 0
    p = chosen.sum() / bases
    assert abs(p - 0.15) < 4 * np.sqrt(0.15 * 0.85 / bases)
    np.testing.assert_array_equal(targets[chosen], tokens[chosen])
    assert np.all(targets[~chosen] == dna.PAD)
    n = chosen.sum()
    masked = np.mean(inputs[chosen] == dna.MASK)
    kept = np.mean(inputs[chosen] == tokens[chosen])
    # 80 % [MASK]; kept = 10 % unchanged + 10 % x 1/12 random draws of the same id
    assert abs(masked - (0.8 + 0.1 / 12)) < 4 * np.sqrt(0.8 * 0.2 / n)
    assert abs(kept - (0.1 + 0.1 / 12)) < 4 * np.sqrt(0.11 * 0.89 / n)
    # random replacements are uniform over all 12 ids: ids that are never an original base
    # (specials and N) each get 1/12 of the ~10 % swapped positions
    counts = np.bincount(inputs[chosen], minlength=12)[[0, 1, 2, 4, 5, 6, 11]]
    expected = 0.1 * n / 12
    assert np.all(np.abs(counts - expected) < 4 * np.sqrt(expected)), counts
    assert np.all(inputs[~chosen] == np.where(is_n, dna.PAD, tokens)[~chosen])


def test_labeled_sequences_in_the_three_benchmark_formats(tmp_path):
    seqs, labels = dna.read_labeled_sequences(data_path("dna", "gue_tf0_train_1200.csv.gz"))
    assert len(seqs) == len(labels) > 1000 and set(labels.tolist()) == {0, 1}
    assert {len(s) for s in seqs} == {101}
    seqs, labels = dna.read_labeled_sequences(
        data_path("dna", "gb_promoters_nontata_test_400.tsv.gz"))
    assert len(seqs) == 400 and set(labels.tolist()) == {0, 1}
    nt = data_path("dna", "nt_toy_20_per_task.tsv.gz")
    seqs, labels = dna.read_labeled_sequences(nt, task="H3K27ac")
    assert len(seqs) == 20
    with pytest.raises(ValueError, match="choose one task"):
        dna.read_labeled_sequences(nt)
    with pytest.raises(ValueError, match="no task 'nope'; tasks: \\['"):
        dna.read_labeled_sequences(nt, task="nope")
    for text, match in [("seq,y\nACGT,1\n", ":1: expected columns"),
                        ("sequence,label\nACGT,x\n", ":2: expected a class index .* got 'x'"),
                        ("sequence,label\nACGT,-1\n", ":2: expected a class index .* got '-1'"),
                        ("sequence,label\nACGT,1,7\n", ":2: expected 2 fields as the header, got 3"),
                        ("sequence,label\nACGU,1\n", ":2: characters 'U'"), ("sequence,label\n,1\n", ":2: empty")]:
        (tmp_path / "t.csv").write_text(text)
        with pytest.raises(ValueError, match=match):
            dna.read_labeled_sequences(tmp_path / "t.csv")




@pytest.fixture(scope="module")
def windows(tmp_path_factory):
    return dna.genome_windows(CHR2, 1000, data_dir=tmp_path_factory.mktemp("tfds"), valid_fraction=0.1)


def test_genome_windows_from_the_tfds_blocks_equal_the_fasta(windows):
    chr2 = dna.read_genome(CHR2)["chr2"]
    genome = windows["train"].genome
    assert genome.sizes == {"chr2": 2_333_275}
    # across a block boundary (blocks of 2^16), at the end, and soft-masked case kept
    for start, n in [(65_530, 20), (0, 70_000), (2_333_275 - 7, 7), (131_000, 2_000)]:
        assert genome.fetch("chr2", start, n) == chr2[start:start + n]
    with pytest.raises(ValueError, match="outside"):
        genome.fetch("chr2", 2_333_270, 10)
    n_windows = 2_333_275 // 1000
    train, valid = windows["train"], windows["valid"]
    assert len(train) + len(valid) == n_windows - 10  # the first 10 kb are N: dropped (< 50 % ACGT)
    assert len(valid) == int(np.ceil(0.1 * (n_windows - 10)))
    assert max(s for _, s in train.starts) < min(s for _, s in valid.starts)  # the held-out tail
    for source in (train, valid):
        for i in (0, len(source) // 2, len(source) - 1):
            r = source[i]
            assert r["sequence"] == chr2[r["start"]:r["start"] + 1000] and r["start"] % 1000 == 0


def test_genome_windows_from_a_bed_follow_hg38dataset(tmp_path):
    bed = tmp_path / "regions.bed"
    bed.write_text("chr2\t1000000\t1100000\ttrain\nchr2\t2000000\t2100000\tvalid\n")
    out = dna.genome_windows(CHR2, 2**14, bed=bed, data_dir=tmp_path / "t")
    assert sorted(out) == ["train", "valid"] and len(out["train"]) == len(out["valid"]) == 2**20 // 2**14
    assert out["train"].starts == dna.bed_windows([("chr2", 1000000, 1100000)], 2**14, {"chr2": 2_333_275})
    assert out["valid"].starts[-1] == ("chr2", 2_333_275 - 2**14)  # shifted inside the chromosome


def test_malformed_genome_fasta_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.fa"
    bad.write_text(">chr1\nACGTACGT\nACGU\n")
    with pytest.raises(ValueError, match=r"bad.fa:3"):
        dna.genome_windows(bad, 4, data_dir=tmp_path / "tfds")


def test_lm_examples_clm_and_mlm(windows):
    seq = windows["train"][5]["sequence"]
    rng = np.random.default_rng(0)
    clm = dna.lm_example(seq, rng, objective="clm")
    assert clm["tokens"].tolist() == dna.encode(seq).tolist() + [dna.SEP]
    mlm = dna.lm_example(seq, rng, objective="mlm")
    assert {k: v.shape for k, v in mlm.items()} == {k: (1000,) for k in ("tokens", "targets", "loss_mask")}
    chosen = mlm["loss_mask"] > 0
    assert np.array_equal(mlm["targets"][chosen], dna.encode(seq)[chosen]) and np.all(mlm["targets"][~chosen] == dna.PAD)
    flips = [dna.lm_example(seq, np.random.default_rng(s), objective="clm", rc_aug=True)["tokens"][:-1] for s in range(200)]
    rc = sum(np.array_equal(f, dna.reverse_complement(dna.encode(seq))) for f in flips)
    assert sum(np.array_equal(f, dna.encode(seq)) for f in flips) + rc == 200 and 70 < rc < 130
    with pytest.raises(ValueError, match="objective"):
        dna.lm_example(seq, rng, objective="fim")


def test_rc_augment_flips_about_half_the_examples_with_their_mask():
    ids = dna.encode("ACGTTGCANNAC")
    mask = np.arange(len(ids)) >= 3  # left padding
    rng = np.random.default_rng(0)
    outs = [dna.rc_augment(rng, ids, mask) for _ in range(200)]
    is_rc = [np.array_equal(t, dna.reverse_complement(ids)) and np.array_equal(m, mask[::-1]) for t, m in outs]
    is_same = [np.array_equal(t, ids) and np.array_equal(m, mask) for t, m in outs]
    assert all(a or b for a, b in zip(is_rc, is_same)) and 70 < sum(is_rc) < 130
    assert all(np.array_equal(dna.rc_augment(rng, ids, p=0.0)[0], ids) for _ in range(20))
