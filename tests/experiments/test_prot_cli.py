"""The three Prot-xLSTM commands end to end on tiny configs: pretrain (and resume), generate, fitness."""

import csv
import json
import shutil

import pytest

from bioxlstm_jax.assets import asset_path
from tests.runs import PROT_TINY, run_command

pytestmark = pytest.mark.xdist_group("prot")  # shares prot_run with the protein notebooks
BLAT = asset_path("protein", "BLAT_ECOLX")


@pytest.fixture
def workdir(prot_run):
    return prot_run


def steps(wd):
    return [json.loads(line)["step"] for line in (wd / "metrics.jsonl").read_text().splitlines()]


def test_pretrain_writes_a_run_and_resumes(workdir, tmp_path):
    for name in ("config.json", "model.json", "metrics.jsonl", "curves.png"):
        assert (workdir / name).is_file(), name
    assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == [2, 4]
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    plan = records[0]["plan"]  # the header record: what the run planned before its first step
    assert (records[0]["step"], plan["tokens_per_step"], plan["devices"], plan["remat"], plan["remat_setting"]) == \
        (0, 8 * 256, 2, "none", "auto")
    assert plan["parameters"] > 0 and plan["planned_bytes_per_device"] > 0
    assert plan["mlstm"] == "chunkwise, XLA (not on an NVIDIA GPU)"
    evals = [r for r in records if "eval/loss" in r]
    assert [r["step"] for r in evals] == [2, 4]
    for key in ("eval/perplexity", "eval/fim/perplexity", "eval/last_seq/perplexity"):
        assert all(r[key] > 1.0 for r in evals), key
    # resume: the same command with more steps continues from step 4
    wd2 = tmp_path / "run"
    shutil.copytree(workdir, wd2)
    # how the model runs (remat, kernel) may change on resume; the restart prints and records its plan
    res = run_command("experiments.prot_pretrain", f"--workdir={wd2}", "--config.steps=6", *PROT_TINY,
                      "--config.model.remat=block", "--config.model.kernel=xla")
    assert "plan: remat block; mLSTM chunkwise, XLA" in res.stdout
    records = [json.loads(line) for line in (wd2 / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "train/loss" in r] == [1, 2, 3, 4, 5, 6]
    assert [(r["step"], r["plan"]["remat"]) for r in records if "plan" in r] == [(0, "none"), (4, "block")]
    assert json.loads((wd2 / "model.json").read_text())["remat"] == "block"


def test_generate_writes_fasta_with_likelihoods(workdir, tmp_path):
    out = tmp_path / "gen" / "generated.fasta"
    msa = asset_path("protein", "clusters", "protmamba_example_msa.a3m.gz")
    res = run_command("experiments.prot_generate", f"--config.ckpt={workdir}", f"--config.msa={msa}",
                      f"--workdir={out.parent}", "--config.n_context=3", "--config.num_samples=3",
                      "--config.batch_size=2", "--config.max_new_tokens=20", "--config.model.kernel=xla",
                      "--config.model.chunk_size=64")
    log = res.stdout + res.stderr
    assert "wrote 3 proteins" in log
    res = run_command("experiments.prot_generate", f"--config.ckpt={workdir}", f"--config.msa={msa}",
                      f"--workdir={tmp_path / 'bad'}", "--config.model.embedding_dim=8", ok=False)
    assert (res.returncode, res.stderr.splitlines()[-1]) == (2, f"error: {workdir}: the checkpoint's parameters do "
                                                               "not fit its model with embedding_dim=8")
    assert not (tmp_path / "bad").exists()
    lines = out.read_text().splitlines()
    assert len(lines) == 6 and all(h.startswith(">sample_") and "log_likelihood=" in h for h in lines[::2])
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    out2 = cwd / "runs" / "prot_generate" / "generated.fasta"  # the default workdir, and nothing else in cwd
    run_command("experiments.prot_generate", f"--config.ckpt={workdir}", f"--config.msa={msa}",
                "--config.n_context=2", "--config.num_samples=2", "--config.max_new_tokens=12",
                "--config.target_seq=MKVLAAGITEQW", "--config.spans=3-4,8-9", cwd=cwd,
                outputs=["runs/prot_generate"])
    for seq in out2.read_text().splitlines()[1::2]:
        assert seq.startswith("MK")


def test_fitness_scores_the_blat_assay(workdir, tmp_path):
    out = tmp_path / "fit" / "BLAT_ECOLX_Jacquier_2013_predictions.csv"
    res = run_command("experiments.prot_fitness", f"--config.ckpt={workdir}",
                      f"--config.dms={BLAT / 'BLAT_ECOLX_Jacquier_2013.csv.gz'}",
                      f"--config.msa={BLAT / 'BLAT_ECOLX_ColabFold_2202_poet.a3m.gz'}", f"--workdir={out.parent}",
                      "--config.replicates=2", "--config.max_context_tokens=1500", "--config.batch_size=64",
                      "--config.retrieval_alpha=0.5")
    log = res.stdout + res.stderr
    assert "989 mutants" in log and "Spearman" in log and "AUC" in log
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 989 and all(r["predicted_score"] for r in rows)
    assert out.with_suffix(".png").is_file()


def test_fitness_rejects_a_wrong_wild_type(workdir, tmp_path):
    res = run_command("experiments.prot_fitness", f"--config.ckpt={workdir}",
                      f"--config.dms={BLAT / 'BLAT_ECOLX_Jacquier_2013.csv.gz'}",
                      f"--config.msa={BLAT / 'BLAT_ECOLX_ColabFold_2202_poet.a3m.gz'}", "--config.target_seq=MKVL",
                      f"--workdir={tmp_path / 'x'}", ok=False)
    assert res.returncode != 0 and "outside the wild type" in res.stderr
    assert not (tmp_path / "x").exists()


def test_proteingym_scores_the_four_blat_assays_with_the_baseline_and_resumes(workdir, tmp_path):
    """The shipped example (four BLAT_ECOLX assays, one protein and MSA: one set of prefills), then a
    re-run after one assay's output is lost (an interrupted assay never leaves its CSV: atomic write):
    only that assay is scored again, to the same numbers, and the summary is unchanged."""
    out = tmp_path / "pg"
    args = ["experiments.proteingym", f"--config.ckpt={workdir}", f"--workdir={out}", "--config.replicates=1",
            "--config.max_context_tokens=1500", "--config.batch_size=64", "--config.progress=False"]
    log = run_command(*args).stdout
    ids = ["BLAT_ECOLX_Deng_2012", "BLAT_ECOLX_Firnberg_2014", "BLAT_ECOLX_Jacquier_2013", "BLAT_ECOLX_Stiffler_2015"]
    assert sorted(p.stem for p in (out / "assays").iterdir()) == ids
    assert "4 assays (0 skipped for missing files)" in log and "independent_site" in log
    sizes = {i: len(list(csv.DictReader((out / "assays" / f"{i}.csv").open()))) for i in ids}
    assert sizes == {"BLAT_ECOLX_Deng_2012": 4996, "BLAT_ECOLX_Firnberg_2014": 4783, "BLAT_ECOLX_Jacquier_2013": 989,
                     "BLAT_ECOLX_Stiffler_2015": 4996}
    per_assay = list(csv.DictReader((out / "per_assay.csv").open()))
    assert [(r["DMS_id"], r["scorer"]) for r in per_assay] == [(i, s) for i in ids for s in ("model", "independent_site")]
    summary = json.loads((out / "summary.json").read_text())["summary"]
    base = summary["independent_site"]["Spearman"]
    assert base["Average"] == base["Function_OrganismalFitness"] == base["High_MSA_depth"]
    assert 0.4 < base["Average"] < 0.8  # the MSA profile ranks BLAT's mutants well (measured 0.61)
    assert (out / "spearman.png").read_bytes()[:4] == b"\x89PNG"
    lost = out / "assays" / "BLAT_ECOLX_Firnberg_2014.csv"
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (out / "assays").iterdir()}
    summary_before = (out / "summary.csv").read_text()
    lost.unlink()
    log = run_command(*args).stdout
    assert "resuming: 3 of 4 assays already scored" in log
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (out / "assays").iterdir()}
    assert {k: v for k, v in after.items() if k != lost.name} == {k: v for k, v in before.items() if k != lost.name}
    assert after[lost.name][0] == before[lost.name][0]
    assert (out / "summary.csv").read_text() == summary_before
    res = run_command(*[a for a in args if "replicates" not in a], "--config.replicates=2", ok=False)
    assert res.returncode == 2 and "scored with other settings (replicates is 1 there, 2 here)" in res.stderr


def test_generation_eval_scores_samples_against_their_family_and_resumes(workdir, tmp_path):
    """Two shipped held-out families x 1 context size x 2 settings x 3 samples: every sample and natural
    protein scored, one summary row per family and setting, the table over families, the plot; a re-run
    reads the finished families back instead of sampling again."""
    out = tmp_path / "eval"
    args = ("experiments.prot_generation_eval", f"--config.ckpt={workdir}", f"--workdir={out}",
            "--config.n_contexts=(3,)", "--config.settings=1.0:10:1.0,0.8:10:0.9", "--config.num_samples=3",
            "--config.batch_size=3", "--config.max_new_tokens=40", "--config.max_natural=4", "--config.progress=False")
    res = run_command(*args)
    assert "2 families, 2 settings, 12 samples" in res.stdout
    rows = list(csv.DictReader(open(out / "samples.csv")))
    assert len(rows) == 2 * 4 + 12 and {r["kind"] for r in rows} == {"natural", "sample"}
    assert all(r["hmmer_evalue"] != "" and 0.0 <= float(r["min_hamming"]) <= 1.0 for r in rows
               if r["kind"] == "natural")
    # the 4-step model often writes special tokens: those samples are kept unscored, the summary has a row per
    # family and setting with a scored sample
    scored = {(r["family"], r["temperature"]) for r in rows if r["kind"] == "sample" and r["valid"] == "True"}
    assert all(r["hmmer_score"] == "nan" for r in rows if r["kind"] == "sample" and r["valid"] == "False")
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["per_family"]) == len(scored) >= 1 and len(summary["over_families"]) == 2
    table = next(t for t in summary["over_families"].values() if t)
    assert 1 <= table["min_hamming_mean"]["families"] <= 2 and "hmmer_score_ks" in table
    assert (out / "scores.png").stat().st_size > 10_000 and len(list((out / "families").iterdir())) == 2
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "families").iterdir()}
    res = run_command(*args)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "families").iterdir()} == stamps
    assert "2 families, 2 settings, 12 samples" in res.stdout
