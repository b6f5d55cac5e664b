"""SMILES tokenizer round trip on every shipped SMILES (all shared data in a slow check), the reference mode,
vocabularies and the readers."""

import gzip
import zipfile

import pytest

from bioxlstm_jax.assets import asset_path
from bioxlstm_jax.data.smiles import BEG, END, PAD, SmilesVocab, read_smiles, tokenize
from tests.helpers import data_path, shared_data

# Chem-xLSTM's vocabulary on mini_train, in its first-appearance order (its tokenizer learns it so).
REFERENCE_MINI_TRAIN = ("[PAD] [BEG] O = C ( c 1 2 ) N 3 [END] n # S F Cl [ H ] - 4 5 6 s o P I + Br 7 8 9 "
                        "%10 %11").split()


SHIPPED = {"chembl_mini_train.txt.gz": 50_000, "chembl_valid_5k.txt.gz": 5_000, "chembl_test_5k.txt.gz": 5_000,
           "icst_valid_domains.txt.gz": 50}


def _round_trip(paths):
    """Every molecule of every line tokenizes back to itself; returns the line count per file."""
    counts = {}
    for path in paths:
        for where, line in read_smiles(path):
            for molecule in line.split("."):
                assert "".join(tokenize(molecule)) == molecule, where
            counts[path.name] = counts.get(path.name, 0) + 1
    return counts


def test_round_trip_on_the_shipped_smiles():
    """Every line of the shipped ChEMBL and ICST sets and of 1,000 MOSES molecules tokenizes back to itself."""
    paths = [asset_path("chem", name) for name in SHIPPED] + [data_path("chem", "moses_test_1k.csv.gz")]
    assert _round_trip(paths) == {**SHIPPED, "moses_test_1k.csv.gz": 1_000}
    # The reference regex cannot round-trip part of the ICST set (single backslashes, [Hg] ...).
    reference_fails = 0
    for _, line in read_smiles(asset_path("chem", "icst_valid_domains.txt.gz")):
        try:
            tokenize(line, "reference")
        except ValueError:
            reference_fails += 1
    assert reference_fails > 0


@pytest.mark.slow
def test_round_trip_on_all_shared_smiles():
    """Release check on the full shared chemistry data ($BIOXLSTM_SHARED_DATA): ChEMBL, ICST, all of MOSES."""
    chem = shared_data("chem")
    paths = [p for p in sorted(chem.rglob("*")) if p.suffix in (".zip", ".gz")]
    assert sum(_round_trip(paths).values()) == 3 * 50_000 + 50 + 1_584_663 + 176_074


@pytest.mark.parametrize("smiles,tokens", [
    ("CSc1ccccc1", "C S c 1 c c c c c 1"),  # S then aromatic c, not scandium
    ("CC[Hg]SC", "C C [ Hg ] S C"),
    ("[Sn]", "[ Sn ]"),
    ("[13CH3][C@@H](N)C(=O)[O-]", "[ 1 3 C H 3 ] [ C @ @ H ] ( N ) C ( = O ) [ O - ]"),
    ("C/C=C\\C", "C / C = C \\ C"),
    ("c1cc[se]c1", "c 1 c c [ se ] c 1"),
    ("C%12CCCCC%12", "C %12 C C C C C %12"),
    ("[Na+].[Cl-]", "[ Na + ] . [ Cl - ]"),
])
def test_tokens(smiles, tokens):
    assert tokenize(smiles) == tokens.split()


def test_reference_mode_matches_chem_xlstm_and_refuses_to_drop():
    assert tokenize("O=C(O)c1ccc(Cl)cc1", "reference") == "O = C ( O ) c 1 c c c ( Cl ) c c 1".split()
    with pytest.raises(ValueError, match="silently drop"):
        tokenize("C/C=C\\C", "reference")
    with pytest.raises(ValueError, match="silently drop"):
        tokenize("CC[Hg]SC", "reference")


@pytest.mark.parametrize("bad,where", [("C[C", "position 1"), ("CC]", "position 2"), ("C!C", "position 1"),
                                       ("CXC", "position 1"), ("C[Qq]", "position 2")])
def test_untokenizable_raises_with_position(bad, where):
    with pytest.raises(ValueError, match=where):
        tokenize(bad)


def test_vocab_learned_in_reference_order_and_round_trips(tmp_path):
    smiles = [s for _, s in read_smiles(asset_path("chem", "chembl_mini_train.txt.gz"))]
    assert len(smiles) == 50_000
    for mode in ("reference", "bioxlstm"):
        vocab = SmilesVocab.learn(smiles, mode)
        assert list(vocab.tokens) == REFERENCE_MINI_TRAIN
        assert (vocab.pad_id, vocab.beg_id) == (0, 1)
    vocab = SmilesVocab.learn(smiles)
    for s in smiles[:2000]:
        ids = vocab.encode(s)
        assert ids[0] == vocab.beg_id and ids[-1] == vocab.end_id
        assert vocab.decode(ids + [vocab.pad_id] * 3) == s
    assert vocab.decode([vocab.beg_id, vocab.ids["C"], vocab.end_id, vocab.ids["O"]]) == "C"
    with pytest.raises(ValueError, match=r"\['Hg'\]"):
        vocab.encode("CC[Hg]C")
    vocab.save(tmp_path / "vocab.json")
    assert SmilesVocab.load(tmp_path / "vocab.json") == vocab
    # Chem-xLSTM's init_arguments.json stores token2label.
    (tmp_path / "init_arguments.json").write_text(
        '{"token2label": {"[PAD]": 0, "[BEG]": 1, "C": 2, "[END]": 3}, "model_class": "xLSTM"}')
    ref = SmilesVocab.load(tmp_path / "init_arguments.json")
    assert ref.tokens == (PAD, BEG, "C", END) and ref.mode == "reference"
    # python -m bioxlstm_jax.convert writes the bare token2label mapping as vocab.json
    (tmp_path / "converted.json").write_text('{"[PAD]": 0, "C": 2, "[BEG]": 1, "[END]": 3}')
    assert SmilesVocab.load(tmp_path / "converted.json") == ref
    (tmp_path / "broken.json").write_text('{"[PAD]": 0, "C": 2}')
    with pytest.raises(ValueError, match="0..n-1"):
        SmilesVocab.load(tmp_path / "broken.json")


def test_readers(tmp_path):
    (tmp_path / "a.smi").write_text("SMILES\nCCO ethanol\n\nc1ccccc1 benzene\n")
    assert list(read_smiles(tmp_path / "a.smi")) == [(f"{tmp_path / 'a.smi'}:2", "CCO"),
                                                      (f"{tmp_path / 'a.smi'}:4", "c1ccccc1")]
    with gzip.open(tmp_path / "b.csv.gz", "wt") as f:
        f.write("id,Smiles\n1,CCO\n2,CCN\n")
    assert [s for _, s in read_smiles(tmp_path / "b.csv.gz")] == ["CCO", "CCN"]
    with zipfile.ZipFile(tmp_path / "c.zip", "w") as z:
        z.writestr("c.txt", "CCO\nCCC\n")
    assert [s for _, s in read_smiles(tmp_path / "c.zip")] == ["CCO", "CCC"]
    (tmp_path / "d.csv").write_text("id,name\n1,x\n")
    with pytest.raises(ValueError, match=r"d.csv:1: expected a column 'SMILES'"):
        list(read_smiles(tmp_path / "d.csv"))
    (tmp_path / "e.csv").write_text("smiles,y\nCCO,1\n,2\n")
    with pytest.raises(ValueError, match=r"e.csv:3: no value in column 'smiles'"):
        list(read_smiles(tmp_path / "e.csv"))
    (tmp_path / "f.txt").write_text("\n\n")
    with pytest.raises(ValueError, match="no SMILES found"):
        list(read_smiles(tmp_path / "f.txt"))
    with pytest.raises(FileNotFoundError):
        list(read_smiles(tmp_path / "missing.txt"))
