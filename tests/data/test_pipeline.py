"""grain pipelines: packing, padding, sharding, determinism and mid-epoch resume; TFDS builders."""

import gzip
import itertools

import numpy as np
import pytest

from bioxlstm_jax.data import lm_batches
from bioxlstm_jax.data.formats import read_fasta, read_lines
from bioxlstm_jax.data.tfds_builders import sequence_records
from tests.helpers import data_path

UNIPROT = data_path("protein", "uniprot_500.fasta.gz")
GLOBINS = data_path("protein", "globins45.fa")


def source(n=40, seed=0):
    rng = np.random.default_rng(seed)
    # example k is k+1 repeated, so every token says which example it came from
    return [{"tokens": np.full(rng.integers(1, 30), k + 1, np.int32)} for k in range(n)]


def take(ds, n, state=None):
    it = iter(ds)
    if state is not None:
        it.set_state(state)
    return [next(it) for _ in range(n)]


def test_packing_keeps_examples_whole_and_marks_segments():
    src = source()
    for batch in take(lm_batches(src, batch_size=4, seq_len=16, seed=1, num_epochs=1), 5):
        tokens, seg, pos = batch["tokens"], batch["segment_ids"], batch["positions"]
        assert tokens.shape == seg.shape == pos.shape == (4, 16)
        assert (tokens[seg == 0] == 0).all()
        for row in range(4):
            for s in set(seg[row]) - {0}:
                where = np.flatnonzero(seg[row] == s)
                assert (np.diff(where) == 1).all()  # contiguous
                (k,) = set(tokens[row, where])  # one example
                assert len(where) == min(len(src[k - 1]["tokens"]), 16)  # whole, or cropped to seq_len
                np.testing.assert_array_equal(pos[row, where], np.arange(len(where)))


def test_padding_mode_one_example_per_row():
    src = source()
    (batch,) = take(lm_batches(src, batch_size=8, seq_len=16, seed=0, pack=False), 1)
    lengths = (batch["segment_ids"] > 0).sum(1)
    for row, n in enumerate(lengths):
        k = batch["tokens"][row, 0]
        assert n == min(len(src[k - 1]["tokens"]), 16)
        assert (batch["tokens"][row, n:] == 0).all() and (batch["tokens"][row, :n] == k).all()


def test_epochs_are_reshuffled_and_seeded():
    src = source(16)
    order = lambda seed: [int(b["tokens"][0, 0]) for b in take(  # noqa: E731
        lm_batches(src, batch_size=1, seq_len=32, seed=seed, pack=False), 32)]
    a = order(0)
    assert a == order(0) and a != order(1)
    assert sorted(a[:16]) == sorted(a[16:]) == list(range(1, 17)) and a[:16] != a[16:]


@pytest.mark.parametrize("pack", [True, False])
def test_resume_mid_epoch_yields_the_same_batches(pack):
    src = source()

    def crop_randomly(ex, rng):  # a random augmentation must replay too
        return {"tokens": ex["tokens"][: rng.integers(1, len(ex["tokens"]) + 1)]}

    ds = lm_batches(src, batch_size=4, seq_len=16, seed=3, transform=crop_randomly, pack=pack)
    it = iter(ds)
    for _ in range(7):  # mid-epoch, mid packing
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(6)]
    resumed = take(lm_batches(src, batch_size=4, seq_len=16, seed=3, transform=crop_randomly, pack=pack), 6, state)
    for a, b in zip(expected, resumed):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


def test_unpacked_global_batches_do_not_depend_on_the_process_count():
    src = source()
    whole = take(lm_batches(src, batch_size=8, seq_len=16, seed=2, pack=False), 5)
    parts = [take(lm_batches(src, batch_size=2, seq_len=16, seed=2, pack=False, shard_index=i, shard_count=4), 5)
             for i in range(4)]
    for step, batch in enumerate(whole):
        np.testing.assert_array_equal(np.concatenate([p[step]["tokens"] for p in parts]), batch["tokens"])


def test_packed_shards_read_disjoint_examples():
    src = source(40)
    seen = []
    for i in range(2):
        batches = take(lm_batches(src, batch_size=2, seq_len=32, seed=0, shard_index=i, shard_count=2,
                                  num_epochs=1), 3)
        seen.append({int(t) for b in batches for t in np.unique(b["tokens"]) if t})
    assert seen[0] and seen[1] and not seen[0] & seen[1]


def test_fasta_reader_on_real_files_and_errors(tmp_path):
    records = list(read_fasta(GLOBINS))
    assert len(records) == 45 and all(seq.isalpha() for _, seq in records)
    with gzip.open(UNIPROT, "rt") as f:
        assert sum(line.startswith(">") for line in f) == sum(1 for _ in read_fasta(UNIPROT))
    bad = tmp_path / "bad.fa"
    bad.write_text("MKV\n>a\nMKV\n")
    with pytest.raises(ValueError, match=r"bad.fa:1: expected a FASTA header"):
        list(read_fasta(bad))
    bad.write_text(">a\nMKV\n>b\n>c\nMK\n")
    with pytest.raises(ValueError, match=r"bad.fa:3: record 'b' has an empty sequence"):
        list(read_fasta(bad))
    bad.write_text(">a\nMKV\nMK1\n")
    with pytest.raises(ValueError, match=r"bad.fa:3: characters '1' are not in the alphabet"):
        list(read_fasta(bad, alphabet="ACDEFGHIKLMNPQRSTVWY"))
    bad.write_text(">a\nMKV\n>b\n")
    with pytest.raises(ValueError, match=r"bad.fa:3: record 'b' has an empty sequence \(truncated file\?\)"):
        list(read_fasta(bad))
    lines = tmp_path / "smiles.txt"
    lines.write_text("CCO\n\nc1ccccc1\n")
    assert list(read_lines(lines)) == [("smiles.txt:1", "CCO"), ("smiles.txt:3", "c1ccccc1")]


def test_tfds_builder_array_record_without_tensorflow(tmp_path):
    import sys

    srcs = sequence_records({"train": [str(UNIPROT)], "validation": [str(GLOBINS)]}, tmp_path)
    assert len(srcs["train"]) == 500 and len(srcs["validation"]) == 45
    assert "tensorflow" not in sys.modules
    first = next(read_fasta(UNIPROT))
    records = {srcs["train"][i]["id"].decode(): srcs["train"][i]["sequence"].decode() for i in range(500)}
    assert records[first[0]] == first[1]
    # a malformed file fails the preparation, naming the file and line; nothing is left prepared
    bad = tmp_path / "bad.fa"
    bad.write_text(">a\nMKV\n>b\n")
    with pytest.raises(ValueError, match="bad.fa:3"):
        sequence_records({"train": [str(bad)]}, tmp_path / "prepared")
    assert not list((tmp_path / "prepared").rglob("*.array_record*"))
    # feeding the pipeline
    alphabet = {c: i + 1 for i, c in enumerate("ACDEFGHIKLMNPQRSTVWYXBZUO")}
    to_tokens = lambda r, rng: {"tokens": np.array([alphabet[c] for c in r["sequence"].decode()], np.int32)}  # noqa: E731
    (batch,) = take(lm_batches(srcs["validation"], batch_size=2, seq_len=64, transform=to_tokens), 1)
    assert batch["tokens"].shape == (2, 64) and batch["tokens"].max() <= 25
    assert list(itertools.islice(srcs["validation"], 1))


def test_array_batches_eval_pass_serves_every_row_once_with_filler_weights():
    from bioxlstm_jax.data import array_batches

    n = 21
    arrays = {"x": np.arange(n * 3).reshape(n, 3), "labels": np.arange(n)}
    rows, weights = [], []
    for shard in range(2):
        for b in array_batches(arrays, batch_size=4, shuffle=False, num_epochs=1, shard_index=shard, shard_count=2):
            assert b["x"].shape == (4, 3)
            rows += b["labels"].tolist()
            weights += b["weight"].tolist()
    real = [r for r, w in zip(rows, weights) if w == 1.0]
    assert sorted(real) == list(range(n)) and len(rows) == 24 and weights.count(0.0) == 3
    it = iter(array_batches(arrays, batch_size=4, seed=3))
    first = [next(it)["labels"].tolist() for _ in range(5)]  # shuffled, endless
    flat = sum(first, [])
    assert len(set(flat)) == 20 and flat != sorted(flat)  # one shuffled epoch of 21 rows
    assert all(b == 1.0 for b in next(it)["weight"])


def test_one_rule_for_where_prepared_data_goes(tmp_path, monkeypatch):
    """data_dir if given, else $BIOXLSTM_DATA_DIR, else ~/.cache/bioxlstm_jax/tensorflow_datasets; never
    a folder named after None (an earlier bug wrote ``None/`` into the working directory)."""
    from bioxlstm_jax.io import dataset_dir

    monkeypatch.delenv("BIOXLSTM_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert dataset_dir() == dataset_dir(None) == dataset_dir("") == str(
        tmp_path / "home" / ".cache" / "bioxlstm_jax" / "tensorflow_datasets")
    assert dataset_dir(tmp_path / "mine") == str(tmp_path / "mine")
    monkeypatch.setenv("BIOXLSTM_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.chdir(tmp_path)
    srcs = sequence_records({"train": [str(GLOBINS)]})
    assert len(srcs["train"]) == 45
    assert list((tmp_path / "env").rglob("*.array_record*")) and not (tmp_path / "None").exists()


def test_the_repository_ships_no_prepared_data():
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        pytest.fail(f"{root}: not a git checkout")
    files = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True).stdout.split()
    assert not [f for f in files if "array_record" in f or f.startswith("None/")]
