"""Prot-xLSTM data: vocabulary ids, FIM and position ids on worked examples, MSA readers, cluster builder."""

import gzip

import jax.numpy as jnp
import numpy as np
import pytest

from bioxlstm_jax.assets import asset_path
from bioxlstm_jax.data import protein as P
from bioxlstm_jax.data.formats import read_msa
from bioxlstm_jax.data.tfds_builders import find_clusters, homolog_clusters
from tests.helpers import data_path


def test_vocabulary_has_the_reference_ids():
    # protxlstm/utils.py::AA_TO_ID (the spec lists them)
    expected = {"<cls>": 0, "<pad>": 1, "<eos>": 2, "<unk>": 3, "L": 4, "A": 5, "G": 6, "V": 7, "S": 8, "E": 9,
                "R": 10, "T": 11, "I": 12, "D": 13, "P": 14, "K": 15, "Q": 16, "N": 17, "F": 18, "Y": 19, "M": 20,
                "H": 21, "W": 22, "C": 23, "X": 24, "B": 25, "U": 26, "Z": 27, "O": 28, ".": 29, "-": 30,
                "<null_1>": 31, "<mask>": 32, "<mask-1>": 33, "<mask-2>": 34, "<mask-3>": 35, "<mask-4>": 36,
                "<mask-5>": 37}
    assert P.AA_TO_ID == expected
    assert P.AMINO_ACIDS == "LAGVSERTIDPKQNFYMHWC"
    np.testing.assert_array_equal(P.encode("MaJ"), [0, 20, 3, 3])  # encode does not upper-case: clean first
    assert P.clean_sequence("-mK.a-*") == "MKA"
    np.testing.assert_array_equal(P.encode(P.clean_sequence("-mK.a")), [0, 20, 15, 5])


def test_fim_worked_example():
    tokens = P.encode("LAGVSERTI")  # <cls> + 9 residues, token indices 0..9
    out, pos = P.apply_fim(tokens, [(3, 5), (7, 9)])  # spans "GV" (tokens 3,4) and "RT" (tokens 7,8)
    m1, m2 = 33, 34
    L, A, G, V, S, E, R, T, I = (P.AA_TO_ID[c] for c in "LAGVSERTI")
    assert out.tolist() == [0, L, A, m1, S, E, m2, I, 2, m1, G, V, m2, R, T]
    assert pos.tolist() == [0, 1, 2, 3, 5, 6, 7, 9, 0, 3, 3, 4, 7, 7, 8]
    # no spans: unchanged, no <eos>
    out0, pos0 = P.apply_fim(tokens, [])
    assert out0.tolist() == tokens.tolist() and pos0.tolist() == list(range(10))
    # a span ending where the next starts leaves an empty kept part between the masks
    out2, pos2 = P.apply_fim(tokens, [(1, 3), (3, 4)])
    assert out2.tolist() == [0, m1, m2, V, S, E, R, T, I, 2, m1, L, A, m2, G]
    assert pos2.tolist() == [0, 1, 3, 4, 5, 6, 7, 8, 9, 0, 1, 1, 2, 3, 3]
    with pytest.raises(ValueError, match="sorted"):
        P.apply_fim(tokens, [(5, 7), (3, 4)])


def test_fim_round_trip_and_span_rules():
    rng = np.random.default_rng(0)
    counts = []
    for _ in range(2000):
        n = int(rng.integers(2, 60))
        tokens = np.concatenate([[0], rng.integers(4, 24, n - 1)]).astype(np.int32)
        spans = P.sample_fim_spans(n, rng)
        counts.append(len(spans))
        starts = [s for s, _ in spans]
        assert starts == sorted(set(starts)) and all(s >= 1 for s in starts)
        for (s, e), nxt in zip(spans, starts[1:] + [n]):
            gap = nxt - s
            assert 1 <= e - s <= max(max(int(0.2 * gap), 2) - 1, 1) and e <= nxt
        out, pos = P.apply_fim(tokens, spans)
        assert P.reorder_fim(out).tolist() == tokens.tolist()
        assert len(out) == n + (2 * len(spans) + 1 if spans else 0)
    counts = np.bincount(counts, minlength=6)
    assert counts[6:].sum() == 0 if len(counts) > 6 else True
    # Poisson(1) truncated at 5: P(0) = 0.368 / 0.9994
    assert abs(counts[0] / 2000 - 0.368) < 0.04 and counts[1:].sum() > 1000
    assert all(len(P.sample_fim_spans(30, rng, always_mask=True)) >= 1 for _ in range(100))


def test_homolog_example_shuffles_truncates_and_clamps():
    proteins = ["LAGVS" * 20, "ERTID" * 30, "PKQNF" * 40]
    ex = P.homolog_example(proteins, np.random.default_rng(1), max_len=10_000, fim=False, max_position=64)
    assert ex["tokens"].shape == ex["positions"].shape == (3 + 100 + 150 + 200,)
    starts = np.flatnonzero(ex["tokens"] == 0)
    got = sorted(P.decode(ex["tokens"][s + 1:e]) for s, e in zip(starts, list(starts[1:]) + [len(ex["tokens"])]))
    assert got == sorted(proteins)
    assert ex["positions"].max() == 63  # clamped to max_position - 1
    orders = {tuple(P.homolog_example(proteins, np.random.default_rng(s), max_len=10_000, fim=False)["tokens"][1:3])
              for s in range(20)}
    assert len(orders) == 3  # every protein comes first for some seed: the order is shuffled
    cut = P.homolog_example(proteins, np.random.default_rng(1), max_len=77, fim=True)
    assert len(cut["tokens"]) == 77 and "loss_mask" not in cut
    again = P.homolog_example(proteins, np.random.default_rng(1), max_len=77, fim=True)
    np.testing.assert_array_equal(cut["tokens"], again["tokens"])
    fo = P.homolog_example(proteins, np.random.default_rng(2), max_len=10_000, fim=True, fim_only_loss=True)
    np.testing.assert_array_equal(fo["loss_mask"] > 0, P.fim_token_mask(fo["tokens"]) | (fo["tokens"] == 0))
    sub = [len(np.flatnonzero(P.homolog_example(proteins, np.random.default_rng(s), max_len=10_000, fim=False,
                                                sample_proteins=True)["tokens"] == 0)) for s in range(30)]
    assert set(sub) == {1, 2, 3}


def test_fim_and_last_sequence_masks_worked_example():
    m1 = 33
    # protein 1 with FIM, protein 2 plain, protein 3 cut off
    toks = np.array([0, 4, m1, 6, 2, m1, 5, 0, 7, 8, 0, 9])
    fim = P.fim_token_mask(toks)
    assert fim.tolist() == [0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]
    np.testing.assert_array_equal(np.asarray(P.fim_token_mask(jnp.asarray(toks[None])))[0], fim)
    last = P.last_sequence_target_mask(toks[None])[0]  # over targets toks[1:]
    # last complete protein: <cls> 7 8, closed by the <cls> at index 10 -> targets at indices 8, 9, 10
    assert np.flatnonzero(last).tolist() == [7, 8, 9]
    np.testing.assert_array_equal(np.asarray(P.last_sequence_target_mask(jnp.asarray(toks[None])))[0], last)
    assert not P.last_sequence_target_mask(np.array([[0, 4, 5, 6]])).any()  # no complete protein


def test_read_msa_real_files():
    blat = read_msa(asset_path("protein", "BLAT_ECOLX", "BLAT_ECOLX_ColabFold_2202_poet.a3m.gz"))  # a '#' line first
    assert len(blat) == 4501 and len(blat[0][1]) == 286
    sto = read_msa(data_path("protein", "globins4.sto"))
    assert len(sto) == 4 and len({len(s) for _, s in sto}) == 1
    a2m = read_msa(data_path("protein", "evcouplings_example_aln.a2m"))
    assert len(a2m) == 53
    assert len(read_msa(data_path("protein", "globins45.fa"))) == 45


@pytest.mark.parametrize("name,text,match", [
    ("x.a3m", "MKV\n>a\nMKV\n", r"x.a3m:1: expected a header"),
    ("x.a3m", ">a\nMKV\n>b\n>c\nMK\n", r"x.a3m:3: record 'b' has an empty sequence"),
    ("x.a3m", ">a\nMKV\n>b\n", r"x.a3m:3: record 'b' has an empty sequence \(truncated"),
    ("x.a2m", ">a\nMK1V\n", r"x.a2m:2: characters '1'"),
    ("x.fasta", "", r"no sequence record"),
    ("x.sto", ">a\nMKV\n", r"x.sto:1: expected the header '# STOCKHOLM 1.0'"),
    ("x.sto", "# STOCKHOLM 1.0\na MKV\nb MK-\n", r"does not end with '//'"),
    ("x.sto", "# STOCKHOLM 1.0\na MKV\nb MK\n//\n", r"x.sto:3: row 'b' has 2 columns"),
    ("x.sto", "# STOCKHOLM 1.0\na MKV extra\n//\n", r"x.sto:2: expected '<name> <aligned sequence>'"),
    ("x.txt", ">a\nMKV\n", r"cannot tell the MSA format"),
])
def test_read_msa_errors_name_file_and_line(tmp_path, name, text, match):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(ValueError, match=match):
        read_msa(p)


def test_read_msa_gzip_and_stockholm_blocks(tmp_path):
    p = tmp_path / "y.sto.gz"
    with gzip.open(p, "wt") as f:
        f.write("# STOCKHOLM 1.0\n#=GF ID test\na MK-V\nb M.KV\n\na VL\nb AA\n#=GC RF xxxxxx\n//\n")
    assert read_msa(p) == [("a", "MK-VVL"), ("b", "M.KVAA")]


def test_homolog_clusters_flat_and_openproteinset_tree(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "c1.a3m").write_text("#3\t1\n>q\nMKV\n>h\n-KvV\n")
    (flat / "c2.a2m").write_text(">q\nLLA.\n>h\nLLAk\n")
    with gzip.open(flat / "c3.a3m.gz", "wt") as f:
        f.write(">q\nGGG\n")
    src = homolog_clusters(flat, {"train": None, "eval": ["c2"]}, tmp_path / "tfds")
    assert len(src["train"]) == 2 and len(src["eval"]) == 1
    records = {r["id"].decode(): r["proteins"].decode() for r in (src["train"][i] for i in range(2))}
    assert records == {"c1": "MKV\nKVV", "c3": "GGG"}
    assert src["eval"][0]["proteins"].decode() == "LLA\nLLAK"
    tree = tmp_path / "ops"
    for cid, body in (("A1", ">q\nMKV\n"), ("B2", ">q\nLLA\n>r\nLLS\n")):
        (tree / cid / "a3m").mkdir(parents=True)
        (tree / cid / "a3m" / "uniclust30.a3m").write_text(body)
    assert sorted(find_clusters(tree)) == ["A1", "B2"]
    split = tmp_path / "eval.txt"
    split.write_text("B2\n")
    src = homolog_clusters(tree, {"train": None, "eval": str(split)}, tmp_path / "tfds")
    assert src["eval"][0]["id"].decode() == "B2" and len(src["train"]) == 1
    split.write_text("B2\nZZ9\n")
    with pytest.raises(ValueError, match=r"split 'eval' .*1 of 2 clusters are not in"):
        homolog_clusters(tree, {"train": None, "eval": str(split)}, tmp_path / "tfds")
    (tree / "bad").mkdir()
    (tree / "bad.a3m").write_text(">q\nMK#V\n")
    with pytest.raises(ValueError, match=r"bad.a3m:2: characters '#'"):
        homolog_clusters(tree, {"train": None, "eval": ["A1"]}, tmp_path / "tfds")
