"""``config.model``: every ``XLSTMConfig`` field is the same flag in every job that builds or loads a model."""

import dataclasses
import importlib
import pkgutil

import pytest

import experiments
from bioxlstm_jax.jobs.cli import _unknown_key, model_config
from bioxlstm_jax.nn import XLSTMConfig

JOBS = sorted(m.name for m in pkgutil.iter_modules(experiments.__path__))
FIELDS = {f.name for f in dataclasses.fields(XLSTMConfig)}


@pytest.mark.parametrize("job", JOBS)
def test_every_job_takes_every_model_field(job):
    config = importlib.import_module(f"experiments.{job}").get_config()
    assert set(config.model.keys()) == FIELDS
    for name in ("small_model", "form", "dtype", "chunk_size", "remat", "bidirectional"):
        assert name not in config, f"{job}: config.{name} is a model field: config.model.{name}"


def test_overrides_win_over_the_preset_and_the_job():
    from experiments import prot_pretrain

    c = prot_pretrain.get_config()
    c.update_from_flattened_dict({"model.remat": "block", "model.kernel": "xla", "model.chunk_size": 128,
                                  "model.embedding_dim": 64, "model.context_length": 4096})
    cfg = model_config(c, "prot_xlstm_26m", context_length=2048, chunk_size=32)
    assert (cfg.remat, cfg.kernel, cfg.chunk_size, cfg.embedding_dim, cfg.context_length, cfg.num_blocks) == \
        ("block", "xla", 128, 64, 4096, 16)
    assert model_config(prot_pretrain.get_config(), "prot_small").embedding_dim == 128
    c.model.remat = "full"
    with pytest.raises(ValueError, match=r"^--config.model.remat='full': XLSTMConfig.remat must be one of"):
        model_config(c, "prot_small")
    with pytest.raises(ValueError, match=r"^--config.preset='prot_1b': expected one of prot_xlstm_26m"):
        model_config(prot_pretrain.get_config(), "prot_1b")


def test_job_rules_over_model_fields():
    from bioxlstm_jax.jobs.pretrain import chem_model_config, dna_model_config
    from experiments import chem_pretrain, dna_pretrain

    c = dna_pretrain.get_config()
    c.model.rcps = True
    with pytest.raises(ValueError, match=r"--config.model.rcps=True: RC parameter sharing is --config.rc=ps"):
        dna_model_config(c)
    c = dna_pretrain.get_config()
    c.update_from_flattened_dict({"objective": "clm", "model.remat": "block", "preset": "dna_xlstm_4m"})
    cfg = dna_model_config(c)
    assert (cfg.bidirectional, cfg.remat, cfg.context_length, cfg.num_blocks) == ("none", "block", 1025, 9)
    c = chem_pretrain.get_config()
    assert chem_model_config(c, 36).vocab_size == 36  # the learned vocabulary's size
    c.model.vocab_size = 40
    assert chem_model_config(c, 36).vocab_size == 40
    c.model.vocab_size = 30
    with pytest.raises(ValueError, match="--config.model.vocab_size=30: the vocabulary learned"):
        chem_model_config(c, 36)


def test_unknown_keys_name_the_valid_ones():
    from experiments import dna_finetune

    c = dna_finetune.get_config()
    assert _unknown_key(c, "remat") == "--config.remat: no such config key; model settings are --config.model.remat"
    assert _unknown_key(c, "steps") == "--config.steps: no such config key"
    message = _unknown_key(c, "model.embed_dim")
    assert message.startswith("--config.model.embed_dim: no such config key; --config.model has add_post_blocks_norm")
    assert "embedding_dim" in message and "vocab_size" in message
    assert _unknown_key(c, "optimizer.lrr").endswith("--config.optimizer has b1, b2, clip_norm, eps, lr, min_lr, name, "
                                                     "schedule, warmup_init_lr, warmup_steps, weight_decay, "
                                                     "weight_decay_exclude")
