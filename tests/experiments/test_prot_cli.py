"""The three Prot-xLSTM commands end to end on tiny configs: pretrain (and resume), generate, fitness."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bioxlstm_jax.assets import asset_path

ROOT = Path(__file__).resolve().parents[2]
BLAT = asset_path("protein", "BLAT_ECOLX")
TINY = ["--config.small_model.embedding_dim=16", "--config.small_model.num_blocks=1", "--config.context_length=256",
        "--config.chunk_size=32", "--config.batch_size=8", "--config.eval_batch_size=8", "--config.eval_every=2",
        "--config.eval_steps=1", "--config.checkpoint_every=2", "--config.log_every=1", "--config.progress=False",
        "--config.async_checkpoint=False"]


def run(*args, cwd):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    res = subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout + res.stderr


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prot")
    wd = tmp / "run"
    run("experiments.prot_pretrain", f"--workdir={wd}", f"--config.tfds_dir={tmp / 'tfds'}", "--config.steps=4",
        *TINY, cwd=ROOT)
    return wd


def steps(wd):
    return [json.loads(line)["step"] for line in (wd / "metrics.jsonl").read_text().splitlines()]


def test_pretrain_writes_a_run_and_resumes(workdir, tmp_path):
    for name in ("config.json", "model.json", "metrics.jsonl", "curves.png"):
        assert (workdir / name).is_file(), name
    assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == [2, 4]
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval/loss" in r]
    assert [r["step"] for r in evals] == [2, 4]
    for key in ("eval/perplexity", "eval/fim/perplexity", "eval/last_seq/perplexity"):
        assert all(r[key] > 1.0 for r in evals), key
    # resume: the same command with more steps continues from step 4
    wd2 = tmp_path / "run"
    shutil.copytree(workdir, wd2)
    run("experiments.prot_pretrain", f"--workdir={wd2}", f"--config.tfds_dir={tmp_path / 'tfds'}",
        "--config.steps=6", *TINY, cwd=ROOT)
    train_steps = [r["step"] for r in map(json.loads, (wd2 / "metrics.jsonl").read_text().splitlines())
                   if "train/loss" in r]
    assert train_steps == [1, 2, 3, 4, 5, 6]


def test_generate_writes_fasta_with_likelihoods(workdir, tmp_path):
    out = tmp_path / "gen.fasta"
    msa = asset_path("protein", "clusters", "protmamba_example_msa.a3m.gz")
    log = run("experiments.prot_generate", f"--ckpt={workdir}", f"--msa={msa}", f"--out={out}", "--n_context=3",
              "--num_samples=3", "--batch_size=2", "--max_new_tokens=20", cwd=tmp_path)
    assert "wrote 3 proteins" in log
    lines = out.read_text().splitlines()
    assert len(lines) == 6 and all(h.startswith(">sample_") and "log_likelihood=" in h for h in lines[::2])
    out2 = tmp_path / "inpaint.fasta"
    run("experiments.prot_generate", f"--ckpt={workdir}", f"--msa={msa}", f"--out={out2}", "--n_context=2",
        "--num_samples=2", "--max_new_tokens=12", "--target_seq=MKVLAAGITEQW", "--spans=3-4,8-9", cwd=tmp_path)
    for seq in out2.read_text().splitlines()[1::2]:
        assert seq.startswith("MK")


def test_fitness_scores_the_blat_assay(workdir, tmp_path):
    out = tmp_path / "pred.csv"
    log = run("experiments.prot_fitness", f"--ckpt={workdir}", f"--dms={BLAT / 'BLAT_ECOLX_Jacquier_2013.csv.gz'}",
              f"--msa={BLAT / 'BLAT_ECOLX_ColabFold_2202_poet.a3m.gz'}", f"--out={out}", "--replicates=2",
              "--max_context_tokens=1500", "--batch_size=64", "--retrieval_alpha=0.5", cwd=tmp_path)
    assert "989 mutants" in log and "Spearman" in log and "AUC" in log
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 989 and all(r["predicted_score"] for r in rows)
    assert (tmp_path / "pred.png").is_file()


def test_fitness_rejects_a_wrong_wild_type(workdir, tmp_path):
    env = {**os.environ}
    res = subprocess.run([sys.executable, "-m", "experiments.prot_fitness", f"--ckpt={workdir}",
                          f"--dms={BLAT / 'BLAT_ECOLX_Jacquier_2013.csv.gz'}",
                          f"--msa={BLAT / 'BLAT_ECOLX_ColabFold_2202_poet.a3m.gz'}", "--target_seq=MKVL",
                          f"--out={tmp_path / 'x.csv'}"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode != 0 and "outside the wild type" in res.stderr
    assert not (tmp_path / "x.csv").exists()
