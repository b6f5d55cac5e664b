"""SMILES metrics: definitions on hand-checked sets, FCD against the fcd package itself."""

import json
import subprocess
import sys

import numpy as np
import pytest

from bioxlstm_jax.assets import asset_path
from bioxlstm_jax.data.smiles import read_smiles
from bioxlstm_jax.evaluation import chem
from tests.helpers import data_path


def test_smiles_metrics_by_hand():
    generated = ["CCO", "OCC", "c1ccccc1", "C1CC", None, "xx"]  # OCC = CCO; C1CC has an unclosed ring
    m = chem.smiles_metrics(generated, train=["OCC"], test=["c1ccccc1"])
    assert (m["n"], m["valid"], m["unique"]) == (6, 3, 2)
    assert m["validity"] == 0.5 and m["uniqueness"] == pytest.approx(2 / 3)
    assert m["unique_strings"] == pytest.approx(5 / 6)  # distinct strings, invalid ones included
    assert m["novelty"] == 0.5 and m["novelty_vs_test"] == 0.5
    assert m["scaffolds"] == 2  # benzene, and the empty scaffold of acyclic ethanol
    # two molecules: IntDiv = 1 - their Tanimoto similarity (no shared Morgan bits between these)
    assert 0.9 < m["internal_diversity"] <= 1.0
    assert np.isnan(chem.smiles_metrics(["CCO"])["internal_diversity"])


def test_properties_plot_and_grid(tmp_path):
    props = chem.properties(["CCO", "not a molecule", "c1ccccc1O"])
    assert props["MW"] == pytest.approx([46.069, 94.113], abs=1e-2)
    assert len(props["QED"]) == 2 and np.all((props["QED"] > 0) & (props["QED"] < 1))
    chem.plot_properties(props, chem.properties(["CCN", "CCCC", "c1ccncc1"]), tmp_path / "p.png")
    assert chem.grid_image(["CCO", "bad", "c1ccccc1"], tmp_path / "g.png") == 2
    assert (tmp_path / "p.png").stat().st_size > 0 and (tmp_path / "g.png").stat().st_size > 0


@pytest.mark.torch  # FCD: the fcd package runs ChemNet in PyTorch
def test_fcd_of_a_set_with_itself_is_zero_and_matches_the_fcd_package():
    moses = [s for _, s in read_smiles(data_path("chem", "moses_test_1k.csv.gz"))][:400]
    chembl = [s for _, s in read_smiles(asset_path("chem", "chembl_valid_5k.txt.gz"))][:400]
    assert abs(chem.fcd(moses, moses)) < 1e-6
    ours = chem.fcd(chembl, moses)
    # fcd.get_fcd itself, in a process without JAX (it forks a preprocessing worker)
    code = ("import json, sys, fcd; a, b = json.load(sys.stdin); "
            "print(fcd.get_fcd(a, b, device='cpu'))")
    res = subprocess.run([sys.executable, "-c", code], input=json.dumps([chembl, moses]), capture_output=True,
                         text=True, check=True, timeout=600)
    assert ours == pytest.approx(float(res.stdout.strip().splitlines()[-1]), rel=1e-6)
    assert ours > 1.0  # ChEMBL and MOSES (ZINC) molecules differ
    with pytest.raises(ValueError, match="at least 2"):
        chem.fcd(["CCO"], moses)
