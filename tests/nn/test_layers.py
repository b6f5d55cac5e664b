"""The mLSTM layer's order of operations, written out by hand: RoPE placement relative to the gates."""

import jax
import jax.numpy as jnp
import pytest

from bioxlstm_jax.nn import MLSTMLayer, XLSTMConfig, apply_rope, rope_angles
from bioxlstm_jax.ops import mlstm_parallel
from tests.helpers import assert_close_scaled
from tests.nn.test_model import perturbed_params


def _ln(x, w):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / jnp.sqrt(var + 1e-5) * (1 + w)


def _headwise(x, w):
    NH, O, I = w.shape
    return jnp.einsum("...hd,hod->...ho", x.reshape(*x.shape[:-1], NH, I), w).reshape(*x.shape[:-1], NH * O)


def manual_mlstm_layer(p, x, positions, cfg):
    B, S, _ = x.shape
    I, NH, DH = cfg.mlstm_inner_dim, cfg.mlstm_num_heads, cfg.mlstm_head_dim
    x_m, z = jnp.split(x @ p["proj_up"]["kernel"], 2, -1)
    xp = jnp.pad(x_m, ((0, 0), (3, 0), (0, 0)))
    c = sum(p["conv1d"]["kernel"][j] * xp[:, j : j + S] for j in range(4)) + p["conv1d"]["bias"]
    c = jax.nn.silu(c)
    q, k, v = _headwise(c, p["q_proj"]["weight"]), _headwise(c, p["k_proj"]["weight"]), _headwise(x_m, p["v_proj"]["weight"])
    if cfg.rope == "inner":  # Prot-xLSTM: rotate the inner vector, gates see rotated q, k
        cos, sin = rope_angles(positions, I, cfg.rope_base)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    g = jnp.concatenate([q, k, v], -1)
    i = g @ p["igate"]["kernel"] + p["igate"]["bias"]
    f = g @ p["fgate"]["kernel"] + p["fgate"]["bias"]
    q, k, v = (t.reshape(B, S, NH, DH) for t in (q, k, v))
    if cfg.rope == "head":  # DNA-xLSTM: rotate per head after the gates were formed
        cos, sin = rope_angles(positions, DH, cfg.rope_base)
        q, k = apply_rope(q, cos[:, :, None], sin[:, :, None]), apply_rope(k, cos[:, :, None], sin[:, :, None])
    h = mlstm_parallel(*(t.transpose(0, 2, 1, 3) for t in (q, k, v)), i.transpose(0, 2, 1), f.transpose(0, 2, 1))
    h = _ln(h.transpose(0, 2, 1, 3), p["outnorm"]["weight"].reshape(NH, DH)).reshape(B, S, I)
    return ((h + p["learnable_skip"] * c) * jax.nn.silu(z)) @ p["proj_down"]["kernel"]


@pytest.mark.parametrize("rope", ["none", "inner", "head"])
def test_mlstm_layer_order_of_operations(rope):
    cfg = XLSTMConfig(vocab_size=5, embedding_dim=32, mlstm_num_heads=2, rope=rope, rope_base=50.0, form="parallel")
    x = jax.random.normal(jax.random.key(0), (2, 12, 32))
    positions = jnp.broadcast_to(jnp.arange(12) * 3 + 1, (2, 12))
    layer = MLSTMLayer(cfg)
    if rope == "inner":
        angles = rope_angles(positions, cfg.mlstm_inner_dim, cfg.rope_base)
    elif rope == "head":
        angles = tuple(a[:, :, None] for a in rope_angles(positions, cfg.mlstm_head_dim, cfg.rope_base))
    else:
        angles = None
    params = perturbed_params(layer, x, angles)
    y, _ = layer.apply({"params": params}, x, angles)
    assert_close_scaled(y, manual_mlstm_layer(params, x, positions, cfg), 1e-5, rope)
