"""Schedules against the references' formulas, weight-decay masks, losses against numpy."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from bioxlstm_jax.training import base_config
from bioxlstm_jax.training.losses import causal_lm_sums, masked_lm_sums, segment_resets, summarize
from bioxlstm_jax.training.optim import decay_mask, make_optimizer, make_schedule


def opt(**changes):
    o = base_config().optimizer
    o.update(changes)
    return o


def test_constant_schedule_is_hf_constant_with_warmup():
    sched = make_schedule(opt(lr=6e-4, warmup_steps=500), 10_000)
    for step in [0, 1, 250, 499, 500, 501, 9999]:
        # optax interpolates as end + (init - end)(1 - t / T): float32 cancellation, ~4e-11 absolute
        np.testing.assert_allclose(float(sched(step)), 6e-4 * min(1.0, step / 500), rtol=1e-6, atol=1e-10)


def test_cosine_schedule_is_timm_cosine_with_warmup_prefix():
    lr, lo, init, warm, total = 8e-3, 1e-4, 1e-6, 1000, 10_000
    sched = make_schedule(opt(lr=lr, min_lr=lo, warmup_init_lr=init, warmup_steps=warm, schedule="cosine"), total)

    def timm(t):
        if t < warm:
            return init + t * (lr - init) / warm
        return lo + 0.5 * (lr - lo) * (1 + math.cos(math.pi * (t - warm) / (total - warm)))

    for t in [0, 10, 999, 1000, 1001, 5000, 9999, 10_000]:
        np.testing.assert_allclose(float(sched(t)), timm(t), rtol=1e-5, atol=1e-7 * lr)  # float32 interpolation


def test_unknown_schedule_or_optimizer_is_an_error():
    with pytest.raises(ValueError, match="optimizer.schedule must be one of"):
        make_schedule(opt(schedule="linear"), 10)
    with pytest.raises(ValueError, match="optimizer.name must be one of"):
        make_optimizer(opt(name="lion"), 10)


def test_weight_decay_mask_and_decoupled_decay():
    params = {"backbone": {"token_embedding": {"embedding": jnp.ones((4, 2))},
                           "block_0": {"proj": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}}}}
    mask = decay_mask(params, "bias|embedding")
    assert mask == {"backbone": {"token_embedding": {"embedding": False},
                                 "block_0": {"proj": {"kernel": True, "bias": False}}}}
    assert all(jax.tree.leaves(decay_mask(params, "")))
    # zero gradients: AdamW moves only the decayed leaves, by lr * wd * p
    tx, _ = make_optimizer(opt(lr=0.1, weight_decay=0.5, warmup_steps=0, clip_norm=0.0,
                               weight_decay_exclude="bias|embedding"), 10)
    updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
    np.testing.assert_allclose(updates["backbone"]["block_0"]["proj"]["kernel"], -0.05)
    np.testing.assert_allclose(updates["backbone"]["block_0"]["proj"]["bias"], 0.0)
    np.testing.assert_allclose(updates["backbone"]["token_embedding"]["embedding"], 0.0)


def test_causal_lm_loss_respects_segments_and_mask():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 6, 5)).astype(np.float32)
    tokens = rng.integers(0, 5, (2, 6))
    seg = np.array([[1, 1, 1, 2, 2, 0], [1, 1, 1, 1, 1, 1]])
    mask = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 0, 1, 1, 1]], np.float32)
    sums = jax.device_get(causal_lm_sums(jnp.asarray(logits), jnp.asarray(tokens), jnp.asarray(mask), jnp.asarray(seg)))
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    # targets counted: row 0 at t = 1, 2, 4 (3 starts a new document, 5 is padding); row 1 at t = 1, 3, 4, 5
    counted = [(0, 1), (0, 2), (0, 4), (1, 1), (1, 3), (1, 4), (1, 5)]
    np.testing.assert_allclose(sums["loss"], -sum(logp[b, t - 1, tokens[b, t]] for b, t in counted), rtol=1e-5)
    assert sums["weight"] == len(counted)
    assert sums["correct"] == sum(logits[b, t - 1].argmax() == tokens[b, t] for b, t in counted)
    np.testing.assert_array_equal(segment_resets(jnp.asarray(seg)),
                                  [[0, 0, 0, 1, 0, 1], [0, 0, 0, 0, 0, 0]])
    out = summarize(sums)
    np.testing.assert_allclose(out["perplexity"], math.exp(out["loss"]), rtol=1e-6)


def test_masked_lm_loss_counts_masked_positions_only():
    logits = jnp.zeros((1, 4, 3)).at[0, 1, 2].set(5.0)
    sums = masked_lm_sums(logits, jnp.array([[0, 2, 1, 0]]), jnp.array([[0.0, 1.0, 1.0, 0.0]]))
    assert float(sums["weight"]) == 2 and float(sums["correct"]) == 1
    expected = -(jax.nn.log_softmax(logits[0, 1])[2] + jax.nn.log_softmax(logits[0, 2])[1])
    np.testing.assert_allclose(float(sums["loss"]), float(expected), rtol=1e-6)
    assert isinstance(base_config(), ml_collections.ConfigDict)
