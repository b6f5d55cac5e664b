"""dna_pretrain / dna_finetune / dna_embed / dna_variants end to end on tiny configs and real data, and
the model properties the trained checkpoints must keep: RC equivariance of PS models, RC invariance of
PH-conjoined classifiers, bidirectional models seeing the future."""

import json
import shutil

import jax.numpy as jnp
import numpy as np
import pytest

from bioxlstm_jax.assets import asset_path
from bioxlstm_jax.data import dna
from bioxlstm_jax.inference import load_lm
from bioxlstm_jax.nn import XLSTMClassifier, reverse_complement
from bioxlstm_jax.training.checkpoints import read_params
from tests.runs import DNA_TINY, run_command, train_run

pytestmark = pytest.mark.xdist_group("dna")  # one worker trains the shared DNA runs once
GUE = asset_path("dna", "gue_prom_300_tata")
CHR2 = dna.read_genome(asset_path("dna", "hg38_chr2_1-2333275.fa.gz"))["chr2"]


@pytest.fixture(scope="session")  # session: pytest-xdist may interleave other modules
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("dna")


@pytest.fixture
def mlm_ps(dna_mlm_ps_run):
    return dna_mlm_ps_run


@pytest.fixture(scope="session")
def clm():
    return train_run("experiments.dna_pretrain", "--config.objective=clm", "--config.steps=2", *DNA_TINY)


def window(start, n=128):
    return jnp.asarray(dna.encode(CHR2[start:start + n]))[None]


def test_pretrain_mlm_ps_writes_a_run_and_resumes(mlm_ps, tmp_path):
    for name in ("config.json", "model.json", "metrics.jsonl", "curves.png"):
        assert (mlm_ps / name).is_file(), name
    model_cfg = json.loads((mlm_ps / "model.json").read_text())
    assert model_cfg["rcps"] and model_cfg["bidirectional"] == "sum" and model_cfg["vocab_size"] == 12
    rows = [json.loads(x) for x in (mlm_ps / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "eval/loss" in r] == [2, 4]
    assert all(1.0 < r["train/loss"] < 3.0 for r in rows if "train/loss" in r)  # about ln(4..12)
    wd2 = tmp_path / "run"
    shutil.copytree(mlm_ps, wd2)
    run_command("experiments.dna_pretrain", f"--workdir={wd2}", "--config.steps=6", "--config.rc=ps", *DNA_TINY)
    rows = [json.loads(x) for x in (wd2 / "metrics.jsonl").read_text().splitlines()]
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
    res = run_command("experiments.dna_pretrain", f"--workdir={tmp / 'bad'}", "--config.objective=clm",
                      "--config.rc=ps", *DNA_TINY, ok=False)
    assert res.returncode != 0 and "must be causal" in res.stderr


@pytest.fixture(scope="session")
def gue_small(tmp):
    paths = {}
    for split, n in (("train", 96), ("dev", 24), ("test", 30)):
        import gzip

        with gzip.open(GUE / f"{split}.csv.gz", "rt") as f:
            lines = [next(f) for _ in range(n + 1)]
        paths[split] = tmp / f"{split}.csv"
        paths[split].write_text("".join(lines))
    return paths


FT = ["--config.epochs=2", "--config.batch_size=32", "--config.max_length=128", "--config.eval_batch_size=8",
      "--config.progress=False", "--config.async_checkpoint=False", "--config.log_every=1"]


def test_finetune_ps_from_a_pretrained_checkpoint_over_seeds(mlm_ps, gue_small, tmp):
    out = tmp / "ft_ps"
    res = run_command("experiments.dna_finetune", f"--config.train={gue_small['train']}",
                      f"--config.valid={gue_small['dev']}", f"--config.test={gue_small['test']}",
                      f"--config.ckpt={mlm_ps}", f"--workdir={out}", "--config.rc=ps", "--config.seeds=(1,2)", *FT)
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
    res = run_command("experiments.dna_finetune", f"--config.train={gue_small['train']}",
                      f"--config.test={gue_small['test']}", f"--config.ckpt={mlm_ps}", f"--workdir={tmp / 'ft_bad'}",
                      "--config.rc=ph", *FT, ok=False)
    assert "RCPS model" in res.stderr and "--config.rc=ps" in res.stderr


def test_finetune_ph_from_a_clm_checkpoint_is_rc_invariant_when_conjoined(clm, gue_small, tmp):
    out = tmp / "ft_ph"
    run_command("experiments.dna_finetune", f"--config.train={gue_small['train']}",
                f"--config.test={gue_small['test']}", f"--config.ckpt={clm}", f"--workdir={out}", "--config.seeds=(3,)",
                *FT, devices=8)  # the backbone is read onto one device, then trained on all 8 (failed on jax 0.12)
    report = json.loads((out / "results.json").read_text())
    assert report["seeds"][0]["sizes"] == {"train": 86, "valid": 10, "test": 30}  # 10 % split off
    lm, _ = load_lm(clm)
    params = read_params(out / "seed_3")
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
    run_command("experiments.dna_embed", f"--config.ckpt={mlm_ps}", f"--config.fasta={fasta}", f"--workdir={tmp / 'emb'}")
    assert np.load(tmp / "emb" / "pooled.npy").shape == (2, 64)  # RCPS: 2 x 32
    assert np.load(tmp / "emb" / "per_position.npy").shape == (250, 64)
    table = tmp / "v.tsv"
    alt = {"A": "G", "C": "T", "G": "A", "T": "C"}
    rows = [(p, CHR2[p - 1].upper()) for p in (1_500_001, 1_600_001, 1_700_001, 1_800_001)]
    table.write_text("chrom\tpos\tref\talt\tlabel\n" + "".join(f"chr2\t{p}\t{r}\t{alt[r]}\t{i % 2}\n"
                                                                for i, (p, r) in enumerate(rows)))
    res = run_command("experiments.dna_variants", f"--config.ckpt={mlm_ps}",
                      f"--config.genome={asset_path('dna', 'hg38_chr2_1-2333275.fa.gz')}", f"--config.variants={table}",
                      f"--workdir={tmp}", "--config.window=128")
    assert "4 variants scored (mlm" in res.stdout and "ROC-AUC" in res.stdout
    lines = (tmp / "scores.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["chrom", "pos", "ref", "alt", "label", "llr"] and len(lines) == 5
    assert all(np.isfinite(float(x.split("\t")[-1])) for x in lines[1:])


def test_pretrain_model_configs_for_every_mode():
    from bioxlstm_jax.jobs.pretrain import dna_model_config
    from experiments import dna_pretrain

    def cfg(**changes):
        c = dna_pretrain.get_config()
        c.update_from_flattened_dict(changes)
        return dna_model_config(c)

    default = cfg()
    assert (default.bidirectional, default.rcps, default.context_length, default.num_blocks) == ("sum", False, 1024, 2)
    assert cfg(objective="clm").causal and cfg(objective="clm").context_length == 1025  # window + [SEP]
    assert cfg(rc="ps").rcps and cfg(**{"model.bidirectional": "alternating"}).bidirectional == "alternating"
    native = cfg(**{"model.bidirectional": "native"})
    assert native.form == "parallel"  # the native bidirectional mLSTM has no chunkwise form
    big = cfg(preset="dna_xlstm_4m", context_length=32768)
    assert (big.embedding_dim, big.num_blocks, big.form, big.context_length) == (256, 9, "chunkwise", 32768)
    assert cfg(preset="dna_xlstm_500k", rc="ps").slstm_at == (0, 1, 2, 3, 4)
    for bad, match in (({"objective": "clm", "model.bidirectional": "sum"}, "must be causal"), ({"rc": "both"}, "config.rc"),
                       ({"objective": "fim"}, "objective")):
        with pytest.raises(ValueError, match=match):
            cfg(**bad)
