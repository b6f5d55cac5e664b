"""bioxlstm_jax.io: atomic writes and fixed-shape batching."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from bioxlstm_jax.io import atomic_path, atomic_write, fixed_batches, pad_rows, write_json


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "out.txt"
    assert atomic_write(path, "one\n") == path and path.read_text() == "one\n"
    atomic_write(path, b"two\n")
    assert path.read_text() == "two\n"
    write_json(tmp_path / "r.json", {"a": [1, 2]})
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": [1, 2]}
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["out.txt", "r.json", "sub"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as a plain open() makes it, not mkstemp's 0600


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "curves.png"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp != path and not tmp.exists()
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["curves.png"]


def test_fixed_batches_and_pad_rows_give_one_shape():
    x = np.arange(14).reshape(7, 2)
    batches = [pad_rows(x[s], 3) for s in fixed_batches(len(x), 3)]
    assert [b.shape for b in batches] == [(3, 2)] * 3
    np.testing.assert_array_equal(np.concatenate(batches)[:7], x)
    np.testing.assert_array_equal(batches[-1], [[12, 13], [12, 13], [12, 13]])  # padded with its first row
    assert list(fixed_batches(0, 4)) == []
    with pytest.raises(ValueError, match="at least 1"):
        list(fixed_batches(3, 0))
    with pytest.raises(ValueError, match="do not fit"):
        pad_rows(x, 3)
