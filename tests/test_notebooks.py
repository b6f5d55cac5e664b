"""The notebooks run top to bottom (on shrunken configs) and produce no errors."""

import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

from tests.helpers import xla_flags

ROOT = pathlib.Path(__file__).resolve().parents[1]


EXPECTED = {  # text each notebook prints when it ran through
    "quickstart.ipynb": ["prot_xlstm_102m", "sampled ids"],
    "prot_generation.ipynb": ["context proteins", "inpaint", "generated proteins: 4", "1 families, 2 settings, 8 samples"],
    "variant_fitness.ipynb": ["effects (10, 20)", "mutants in the window: Spearman"],
    "chem_generation.ipynb": ["sampled 100 molecules", "validity", "in-context log-likelihood per token"],
    "dna_finetune.ipynb": ["pretrained: 1 blocks", "| mean |", "embedded 64 sequences", "scored 120 substitutions"],
}
# notebooks that start from a trained model get the session's small run (tests/runs.py) instead of
# training their own; each runs on the pytest-xdist worker that holds that run
RUNS = {"prot_generation.ipynb": ("BIOXLSTM_PROT_RUN", "prot_run", "prot"),
        "variant_fitness.ipynb": ("BIOXLSTM_PROT_RUN", "prot_run", "prot"),
        "chem_generation.ipynb": ("BIOXLSTM_CHEM_RUN", "chem_run", "chem")}
# dna_finetune.ipynb takes $BIOXLSTM_DNA_RUN too, but trains its own 1-block model here: fine-tuning the
# shared 2-block RCPS run would double its time and put it on the worker that already runs the DNA CLI tests


NEEDS_TORCH = {"chem_generation.ipynb"}  # FCD (the fcd package runs ChemNet in PyTorch)


def _marks(name):
    return ([pytest.mark.xdist_group(RUNS[name][2])] if name in RUNS else []) + (
        [pytest.mark.torch] if name in NEEDS_TORCH else [])


@pytest.mark.parametrize("name", [pytest.param(n, marks=_marks(n)) for n in sorted(EXPECTED)])
def test_notebook_executes(name, monkeypatch, request):
    monkeypatch.setenv("BIOXLSTM_SMALL", "1")
    if name in RUNS:
        variable, fixture, _ = RUNS[name]
        monkeypatch.setenv(variable, str(request.getfixturevalue(fixture)))
    monkeypatch.setenv("XLA_FLAGS", xla_flags(2))  # 2 host devices, as the commands the tests run
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    for text in EXPECTED[name]:
        assert text in outputs, text
