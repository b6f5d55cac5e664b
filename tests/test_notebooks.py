"""The notebooks run top to bottom (on shrunken configs) and produce no errors."""

import os
import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[1]


EXPECTED = {  # text each notebook prints when it ran through
    "quickstart.ipynb": ["prot_xlstm_102m", "sampled ids"],
    "prot_generation.ipynb": ["context proteins", "inpaint", "generated proteins: 4"],
    "variant_fitness.ipynb": ["effects (10, 20)", "mutants in the window: Spearman"],
    "chem_generation.ipynb": ["sampled 100 molecules", "validity", "in-context log-likelihood per token"],
    "dna_finetune.ipynb": ["pretrained: 1 blocks", "| mean |", "embedded 64 sequences", "scored 120 substitutions"],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_executes(name, monkeypatch):
    monkeypatch.setenv("BIOXLSTM_SMALL", "1")
    monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    for text in EXPECTED[name]:
        assert text in outputs, text
