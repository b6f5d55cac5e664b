"""chem_pretrain (and resume) and chem_generate end to end on tiny configs and data."""

import json
import shutil

import pytest

from bioxlstm_jax.assets import asset_path
from bioxlstm_jax.data.smiles import SmilesVocab, read_smiles
from tests.runs import CHEM_TINY, run_command

pytestmark = pytest.mark.xdist_group("chem")  # shares chem_run with the chemistry notebook


@pytest.fixture
def data(chem_data):
    return chem_data


@pytest.fixture
def workdir(chem_run):
    return chem_run


def test_pretrain_writes_a_run_with_its_vocab_and_resumes(workdir, data, tmp_path):
    paths = data
    for name in ("config.json", "model.json", "metrics.jsonl", "curves.png", "vocab.json"):
        assert (workdir / name).is_file(), name
    vocab = SmilesVocab.load(workdir / "vocab.json")
    assert vocab == SmilesVocab.learn_file(paths["train"])
    assert json.loads((workdir / "model.json").read_text())["vocab_size"] == len(vocab)
    evals = [r for r in map(json.loads, (workdir / "metrics.jsonl").read_text().splitlines()) if "eval/loss" in r]
    assert [r["step"] for r in evals] == [2, 4]
    assert all(r["eval/valid/perplexity"] > 1 and r["eval/test/perplexity"] > 1 for r in evals)
    wd2 = tmp_path / "run"
    shutil.copytree(workdir, wd2)
    run_command("experiments.chem_pretrain", f"--workdir={wd2}", "--config.steps=6",
                *[f"--config.{s}={p}" for s, p in paths.items()], *CHEM_TINY)
    train_steps = [r["step"] for r in map(json.loads, (wd2 / "metrics.jsonl").read_text().splitlines())
                   if "train/loss" in r]
    assert train_steps == [1, 2, 3, 4, 5, 6]


def test_pretrain_names_the_bad_line(data, tmp_path):
    paths = data
    bad = tmp_path / "bad.smi"
    bad.write_text("CCO\nC!C\n")
    res = run_command("experiments.chem_pretrain", f"--workdir={tmp_path / 'run'}", f"--config.train={bad}",
                      f"--config.valid={paths['valid']}", f"--config.test={paths['test']}", *CHEM_TINY, ok=False)
    assert res.returncode != 0 and f"{bad}:2" in res.stderr and "no token covers '!'" in res.stderr


@pytest.mark.torch  # FCD: the fcd package runs ChemNet in PyTorch
def test_generate_writes_metrics(workdir, tmp_path):
    out = tmp_path / "gen" / "generated.json"
    res = run_command("experiments.chem_generate", f"--config.ckpt={workdir}", "--config.n=24", "--config.batch_size=10",
                      f"--workdir={out.parent}", "--config.reference_size=200")
    record = json.loads(out.read_text())
    metrics = record["metrics"]
    assert metrics["n"] == 24 and len(record["smiles"]) == 24 and len(record["log_likelihood"]) == 24
    for key in ("validity", "uniqueness", "novelty", "novelty_vs_test", "scaffolds", "internal_diversity",
                "finished", "fcd", "MW_mean", "reference_QED_mean"):
        assert key in metrics, key
    assert 0 <= metrics["validity"] <= 1 and "validity" in res.stdout
    if metrics["valid"]:
        assert (out.parent / "generated_properties.png").is_file() and (out.parent / "generated_grid.png").is_file()


@pytest.mark.torch  # FCD: the fcd package runs ChemNet in PyTorch
def test_icl_trains_then_generates_and_ranks_heldout_domains(tmp_path):
    domains = tmp_path / "domains.txt"
    smiles = [s for _, s in read_smiles(asset_path("chem", "chembl_valid_5k.txt.gz"))][:400]
    domains.write_text("\n".join(".".join(smiles[i:i + 50]) for i in range(0, 400, 50)) + "\n")  # 8 domains
    wd = tmp_path / "run"
    res = run_command("experiments.chem_icl", f"--workdir={wd}", f"--config.domains={domains}", "--config.heldout=3",
                      "--config.steps=2", "--config.context_length=128", "--config.model.chunk_size=32",
                      "--config.n_context=2", "--config.n_designs=3", "--config.n_rank=4", *CHEM_TINY)
    result = json.loads((wd / "icl_results.json").read_text())
    assert [r["domain"] for r in result["domains"]] == [5, 6, 7]
    for r in result["domains"]:
        assert r["molecules"] == 50 and 0 <= r["validity"] <= 1 and 0 <= r["auc"] <= 1
    assert "AUC" in res.stdout and (wd / "vocab.json").is_file()
