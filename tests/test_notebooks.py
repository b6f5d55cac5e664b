"""The notebooks run top to bottom (on shrunken configs) and produce no errors."""

import os
import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["quickstart.ipynb"])
def test_notebook_executes(name, monkeypatch):
    monkeypatch.setenv("BIOXLSTM_SMALL", "1")
    monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "prot_xlstm_102m" in outputs and "sampled ids" in outputs
