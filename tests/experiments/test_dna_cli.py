"""dna_pretrain / dna_finetune / dna_embed / dna_variants end to end on tiny configs and real data, and
the model properties the trained checkpoints must keep: RC equivariance of PS models, RC invariance of
PH-conjoined classifiers, bidirectional models seeing the future."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from bioxlstm_jax.assets import asset_path
from bioxlstm_jax.data import dna
from bioxlstm_jax.inference import load_lm
from bioxlstm_jax.inference.loading import restore_params
from bioxlstm_jax.nn import XLSTMClassifier, reverse_complement
from tests.helpers import shared_data

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--config.small_model.embedding_dim=32", "--config.small_model.num_blocks=2",
        "--config.small_model.mlstm_num_heads=1", "--config.small_model.chunk_size=32", "--config.context_length=128",
        "--config.batch_size=4", "--config.eval_batch_size=4", "--config.eval_every=2", "--config.eval_steps=2",
        "--config.checkpoint_every=2", "--config.log_every=1", "--config.progress=False",
        "--config.async_checkpoint=False", "--config.optimizer.warmup_steps=1"]
GUE = shared_data("dna", "gue", "prom", "prom_300_tata")
CHR2 = dna.read_genome(asset_path("dna", "hg38_chr2_1-2333275.fa.gz"))["chr2"]


def run(*args, ok=True):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    res = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    if ok:
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("dna")


def pretrain(tmp, name, *flags, steps=4):
    wd = tmp / name
    run("experiments.dna_pretrain", f"--workdir={wd}", f"--config.tfds_dir={tmp / 'tfds'}", f"--config.steps={steps}",
        *TINY, *flags)
    return wd


@pytest.fixture(scope="module")
def mlm_ps(tmp):
    return pretrain(tmp, "mlm_ps", "--config.rc=ps")


@pytest.fixture(scope="module")
def clm(tmp):
    return pretrain(tmp, "clm", "--config.objective=clm", steps=2)


def window(start, n=128):
    return jnp.asarray(dna.encode(CHR2[start:start + n]))[None]


def test_pretrain_mlm_ps_writes_a_run_and_resumes(mlm_ps, tmp):
    for name in ("config.json", "model.json", "metrics.jsonl", "curves.png"):
        assert (mlm_ps / name).is_file(), name
    model_cfg = json.loads((mlm_ps / "model.json").read_text())
    assert model_cfg["rcps"] and model_cfg["bidirectional"] == "sum" and model_cfg["vocab_size"] == 12
    rows = [json.loads(x) for x in (mlm_ps / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "eval/loss" in r] == [2, 4]
    assert all(1.0 < r["train/loss"] < 3.0 for r in rows if "train/loss" in r)  # about ln(4..12)
    pretrain(tmp, "mlm_ps", "--config.rc=ps", steps=6)
    rows = [json.loads(x) for x in (mlm_ps / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "train/loss" in r] == [1, 2, 3, 4, 5, 6]


def test_trained_ps_model_is_rc_equivariant_from_embedding_to_logits(mlm_ps):
    model, params = load_lm(mlm_ps, "latest")
    x = window(1_500_000)
    logits = np.asarray(model.apply({"params": params}, x))
    logits_rc = np.asarray(model.apply({"params": params}, reverse_complement(x, dna.COMPLEMENT)))
    # logits(rc(x))[t, v] == logits(x)[S-1-t, complement(v)]
    np.testing.assert_allclose(logits_rc, logits[:, ::-1][..., dna.COMPLEMENT], rtol=1e-4, atol=1e-4)
    assert np.abs(logits_rc - logits).max() > 1e-2  # not trivially symmetric


def test_bidirectional_model_sees_the_future_and_the_causal_one_does_not(mlm_ps, clm):
    x = window(1_200_000)
    later = x.at[0, 100].set(dna.MASK)
    for wd, sees_future in ((mlm_ps, True), (clm, False)):
        model, params = load_lm(wd, "latest")
        a, b = (np.asarray(model.apply({"params": params}, t)) for t in (x, later))
        earlier_change = np.abs(a[0, :100] - b[0, :100]).max()
        assert (earlier_change > 1e-4) == sees_future, (wd.name, earlier_change)
        assert np.abs(a[0, 100:] - b[0, 100:]).max() > 1e-4


def test_pretrain_rejects_a_non_causal_clm(tmp):
    res = run("experiments.dna_pretrain", f"--workdir={tmp / 'bad'}", "--config.objective=clm", "--config.rc=ps",
              *TINY, ok=False)
    assert res.returncode != 0 and "must be causal" in res.stderr


@pytest.fixture(scope="module")
def gue_small(tmp):
    paths = {}
    for split, n in (("train", 96), ("dev", 24), ("test", 30)):
        import gzip

        with gzip.open(GUE / f"{split}.csv.gz", "rt") as f:
            lines = [next(f) for _ in range(n + 1)]
        paths[split] = tmp / f"{split}.csv"
        paths[split].write_text("".join(lines))
    return paths


FT = ["--config.epochs=2", "--config.batch_size=16", "--config.eval_batch_size=8", "--config.progress=False",
      "--config.async_checkpoint=False", "--config.log_every=1"]


def test_finetune_ps_from_a_pretrained_checkpoint_over_seeds(mlm_ps, gue_small, tmp):
    out = tmp / "ft_ps"
    res = run("experiments.dna_finetune", f"--train={gue_small['train']}", f"--valid={gue_small['dev']}",
              f"--test={gue_small['test']}", f"--ckpt={mlm_ps}", f"--out={out}", "--config.rc=ps",
              "--config.seeds=(1,2)", *FT)
    report = json.loads((out / "results.json").read_text())
    assert [r["seed"] for r in report["seeds"]] == [1, 2] and (out / "curves.png").is_file()
    assert report["seeds"][0]["sizes"] == {"train": 96, "valid": 24, "test": 30}
    accs = [r["test"]["accuracy"] for r in report["seeds"]]
    assert report["test"]["accuracy"]["mean"] == pytest.approx(np.mean(accs))
    assert report["test"]["accuracy"]["min"] == min(accs) and report["test"]["accuracy"]["max"] == max(accs)
    assert "| mean |" in res.stdout and "test mcc" in res.stdout
    # the validation accuracy of the chosen checkpoint equals the trainer's best eval/accuracy
    rows = [json.loads(x) for x in (out / "seed_1" / "metrics.jsonl").read_text().splitlines()]
    assert report["seeds"][0]["valid"]["accuracy"] == pytest.approx(max(r["eval/accuracy"] for r in rows if "eval/accuracy" in r))
    res = run("experiments.dna_finetune", f"--train={gue_small['train']}", f"--test={gue_small['test']}",
              f"--ckpt={mlm_ps}", f"--out={tmp / 'ft_bad'}", "--config.rc=ph", *FT, ok=False)
    assert "RCPS model" in res.stderr and "--config.rc=ps" in res.stderr


def test_finetune_ph_from_a_clm_checkpoint_is_rc_invariant_when_conjoined(clm, gue_small, tmp):
    out = tmp / "ft_ph"
    run("experiments.dna_finetune", f"--train={gue_small['train']}", f"--test={gue_small['test']}",
        f"--ckpt={clm}", f"--out={out}", "--config.seeds=(3,)", *FT)
    report = json.loads((out / "results.json").read_text())
    assert report["seeds"][0]["sizes"] == {"train": 86, "valid": 10, "test": 30}  # 10 % split off
    lm, _ = load_lm(clm)
    params = restore_params(out / "seed_3")
    clf = XLSTMClassifier(lm.config, 2)
    x = window(900_000, 300)
    mask = jnp.ones(x.shape, bool).at[0, :40].set(False)  # with (left) padding
    x = jnp.where(mask, x, dna.PAD)
    a = clf.apply({"params": params}, x, mask, conjoin=True)
    b = clf.apply({"params": params}, reverse_complement(x, dna.COMPLEMENT), mask[:, ::-1], conjoin=True)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    c = clf.apply({"params": params}, reverse_complement(x, dna.COMPLEMENT), mask[:, ::-1])
    assert np.abs(np.asarray(c) - np.asarray(clf.apply({"params": params}, x, mask))).max() > 1e-5


def test_embed_and_variants_commands(mlm_ps, tmp):
    fasta = tmp / "q.fa"
    fasta.write_text(f">a\n{CHR2[1_000_000:1_000_200]}\n>b\n{CHR2[1_100_000:1_100_050]}\n")
    run("experiments.dna_embed", f"--ckpt={mlm_ps}", f"--fasta={fasta}", f"--out={tmp / 'emb'}")
    assert np.load(tmp / "emb" / "pooled.npy").shape == (2, 64)  # RCPS: 2 x 32
    assert np.load(tmp / "emb" / "per_position.npy").shape == (250, 64)
    table = tmp / "v.tsv"
    alt = {"A": "G", "C": "T", "G": "A", "T": "C"}
    rows = [(p, CHR2[p - 1].upper()) for p in (1_500_001, 1_600_001, 1_700_001, 1_800_001)]
    table.write_text("chrom\tpos\tref\talt\tlabel\n" + "".join(f"chr2\t{p}\t{r}\t{alt[r]}\t{i % 2}\n"
                                                                for i, (p, r) in enumerate(rows)))
    res = run("experiments.dna_variants", f"--ckpt={mlm_ps}", f"--genome={asset_path('dna', 'hg38_chr2_1-2333275.fa.gz')}",
              f"--variants={table}", f"--out={tmp / 'scores.tsv'}", "--window=128", f"--tfds_dir={tmp / 'tfds'}")
    assert "4 variants scored (mlm" in res.stdout and "ROC-AUC" in res.stdout
    lines = (tmp / "scores.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["chrom", "pos", "ref", "alt", "label", "llr"] and len(lines) == 5
    assert all(np.isfinite(float(x.split("\t")[-1])) for x in lines[1:])


def test_pretrain_model_configs_for_every_mode():
    from experiments import dna_pretrain

    def cfg(**changes):
        c = dna_pretrain.get_config()
        c.update_from_flattened_dict(changes)
        return dna_pretrain.model_config(c)

    default = cfg()
    assert (default.bidirectional, default.rcps, default.context_length, default.num_blocks) == ("sum", False, 1024, 2)
    assert cfg(objective="clm").causal and cfg(objective="clm").context_length == 1025  # window + [SEP]
    assert cfg(rc="ps").rcps and cfg(bidirectional="alternating").bidirectional == "alternating"
    native = cfg(bidirectional="native")
    assert native.backend == "parallel"  # the native bidirectional mLSTM has no chunkwise form
    big = cfg(preset="dna_xlstm_4m", context_length=32768)
    assert (big.embedding_dim, big.num_blocks, big.backend, big.context_length) == (256, 9, "chunkwise", 32768)
    assert cfg(preset="dna_xlstm_500k", rc="ps").slstm_at == (0, 1, 2, 3, 4)
    for bad, match in (({"objective": "clm", "bidirectional": "sum"}, "must be causal"), ({"rc": "both"}, "config.rc"),
                       ({"objective": "fim"}, "objective")):
        with pytest.raises(ValueError, match=match):
            cfg(**bad)
