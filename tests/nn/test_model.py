"""XLSTMLM: state passing, prefill + steps, resets, dtypes, remat, RoPE, initialisation."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bioxlstm_jax.data.dna import COMPLEMENT
from bioxlstm_jax.nn import XLSTMLM, XLSTMConfig, apply_rope, prefill, rope_angles, zero_state
from tests.helpers import assert_close_scaled

V = 13


def perturbed_params(model, *inputs, seed=0, scale=0.3):
    """init, then noise of scale/sqrt(fan-in) on every leaf: no zero gates, norms or recurrences."""
    params = model.init(jax.random.key(seed), *inputs)["params"]
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    noisy = [
        p + scale * jax.random.normal(k, p.shape) / (math.sqrt(p.shape[0]) if p.ndim > 1 else 1.0)
        for p, k in zip(leaves, keys)
    ]
    return jax.tree_util.tree_unflatten(tree, noisy)


def tokens_for(seed, B=2, S=40):
    return jax.random.randint(jax.random.key(seed), (B, S), 0, V)


MIXED = XLSTMConfig(vocab_size=V, embedding_dim=64, num_blocks=3, slstm_at=(1,), mlstm_num_heads=2,
                    chunk_size=16, rope="inner")


@pytest.mark.parametrize("rope", ["none", "inner", "head"])
def test_state_passing_equals_one_pass(rope):
    cfg = MIXED.replace(rope=rope)
    model, tokens = XLSTMLM(cfg), tokens_for(0)
    params = perturbed_params(model, tokens)
    full = model.apply({"params": params}, tokens)
    pos = jnp.broadcast_to(jnp.arange(40), (2, 40))
    a, state = model.apply({"params": params}, tokens[:, :23], pos[:, :23], return_state=True)
    b = model.apply({"params": params}, tokens[:, 23:], pos[:, 23:], state)
    assert_close_scaled(jnp.concatenate([a, b], 1), full, 1e-5, "split at 23")


@pytest.mark.parametrize("form", ["parallel", "chunkwise"])
def test_prefill_then_steps_reproduce_full_forward(form):
    cfg = MIXED.replace(form=form)
    model, tokens = XLSTMLM(cfg), tokens_for(1, S=30)
    params = perturbed_params(model, tokens, seed=3)
    full = model.apply({"params": params}, tokens)
    logits, state = model.apply({"params": params}, tokens[:, :17], return_state=True)
    outs = [logits]
    for t in range(17, 30):
        pos = jnp.full((2,), t)
        out, state = model.apply({"params": params}, tokens[:, t], state, pos, method=XLSTMLM.step)
        outs.append(out[:, None])
    assert_close_scaled(jnp.concatenate(outs, 1), full, 1e-5, form)


def test_step_from_zero_state_equals_forward():
    cfg = MIXED.replace(rope="none")
    model, tokens = XLSTMLM(cfg), tokens_for(2, S=12)
    params = perturbed_params(model, tokens)
    full = model.apply({"params": params}, tokens)
    state = zero_state(cfg, 2)
    step = jax.jit(lambda tok, st: model.apply({"params": params}, tok, st, method=XLSTMLM.step))
    for t in range(12):
        out, state = step(tokens[:, t], state)
        assert_close_scaled(out, full[:, t], 1e-5, f"t={t}")


def test_step_of_rope_model_needs_position():
    model, tokens = XLSTMLM(MIXED), tokens_for(0)
    params = model.init(jax.random.key(0), tokens)["params"]
    with pytest.raises(ValueError, match="position"):
        model.apply({"params": params}, tokens[:, 0], zero_state(MIXED, 2), method=XLSTMLM.step)


def test_resets_isolate_packed_documents():
    """A packed row [doc1 | doc2] with a reset at doc2 gives doc2 the logits of a fresh run (mLSTM stack)."""
    cfg = XLSTMConfig(vocab_size=V, embedding_dim=64, num_blocks=2, chunk_size=8, rope="inner")
    model = XLSTMLM(cfg)
    doc1, doc2 = tokens_for(4, B=1, S=19), tokens_for(5, B=1, S=21)
    params = perturbed_params(model, doc1)
    packed = jnp.concatenate([doc1, doc2], 1)
    positions = jnp.concatenate([jnp.arange(19), jnp.arange(21)])[None]
    resets = (jnp.arange(40) == 19)[None]
    out = model.apply({"params": params}, packed, positions, resets=resets)
    assert_close_scaled(out[:, :19], model.apply({"params": params}, doc1), 1e-5, "doc1")
    assert_close_scaled(out[:, 19:], model.apply({"params": params}, doc2), 1e-5, "doc2")
    no_reset = model.apply({"params": params}, packed, positions)
    assert float(jnp.max(jnp.abs(no_reset[:, 19:] - out[:, 19:]))) > 1e-3  # the reset does something


def test_resets_with_slstm_blocks_are_rejected():
    model, tokens = XLSTMLM(MIXED), tokens_for(0)
    params = model.init(jax.random.key(0), tokens)["params"]
    with pytest.raises(ValueError, match="sLSTM"):
        model.apply({"params": params}, tokens, resets=jnp.zeros(tokens.shape, bool))


def test_bfloat16_compute():
    """bfloat16 compute, float32 params and logits (remat under every policy: test_remat_policies_equal_no_remat)."""
    cfg = MIXED.replace(num_blocks=2, embedding_dim=32)
    model, tokens = XLSTMLM(cfg), tokens_for(6, S=16)
    params = perturbed_params(model, tokens)
    ref = jax.jit(model.apply)({"params": params}, tokens)
    bf16 = jax.jit(XLSTMLM(cfg.replace(dtype="bfloat16")).apply)({"params": params}, tokens)
    assert bf16.dtype == jnp.float32
    assert_close_scaled(bf16, ref, 5e-2, "bf16 vs f32")


def test_rope_is_the_reference_complex_rotation_and_relative():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 5, 16)).astype(np.float32)
    pos = np.array([[0, 1, 7, 100, 4096]] * 3)
    cos, sin = rope_angles(jnp.asarray(pos), 16, base=500_000.0)
    out = np.asarray(apply_rope(jnp.asarray(x), cos, sin))
    # Reference: pairs (2j, 2j+1) as complex numbers times exp(i p base^(-2j/dim)).
    theta = 500_000.0 ** (-np.arange(0, 16, 2) / 16)
    z = (x[..., 0::2] + 1j * x[..., 1::2]) * np.exp(1j * pos[..., None] * theta)
    expected = np.stack([z.real, z.imag], -1).reshape(x.shape)
    np.testing.assert_allclose(out, expected, atol=2e-5)
    # <rot(q, p1), rot(k, p2)> depends on p1 - p2 only.
    q, k = jnp.asarray(x[0, 0]), jnp.asarray(x[0, 1])

    def dot(p1, p2):
        c1, s1 = rope_angles(jnp.array(p1), 16)
        c2, s2 = rope_angles(jnp.array(p2), 16)
        return float(apply_rope(q, c1, s1) @ apply_rope(k, c2, s2))

    assert dot(10, 3) == pytest.approx(dot(1007, 1000), rel=1e-4)
    assert dot(10, 3) != pytest.approx(dot(10, 4), rel=1e-3)


@pytest.mark.torch
def test_initialisation_follows_the_reference():
    import torch
    from xlstm.blocks.slstm.cell import sLSTMCell, sLSTMCellConfig

    cfg = XLSTMConfig(vocab_size=V, embedding_dim=128, num_blocks=4, slstm_at=(1, 3), mlstm_num_heads=4)
    params = XLSTMLM(cfg).init(jax.random.key(0), tokens_for(0))["params"]["backbone"]
    m = params["block_0"]["xlstm"]
    np.testing.assert_allclose(m["fgate"]["bias"], np.linspace(3, 6, 4), rtol=1e-6)
    assert not np.any(m["fgate"]["kernel"]) and not np.any(m["igate"]["kernel"])
    assert np.all(m["learnable_skip"] == 1.0)
    D, I = 128, cfg.mlstm_inner_dim
    assert np.std(m["proj_up"]["kernel"]) == pytest.approx(math.sqrt(2 / (5 * D)), rel=0.05)
    assert np.std(m["q_proj"]["weight"]) == pytest.approx(math.sqrt(2 / (5 * D)), rel=0.05)
    assert np.std(m["proj_down"]["kernel"]) == pytest.approx(2 / 4 / math.sqrt(D), rel=0.05)
    assert m["proj_up"]["kernel"].shape == (D, 2 * I)
    # sLSTM: zero recurrence; bias equals the official powerlaw_blockdependent init of the same block.
    for idx in (1, 3):
        s = params[f"block_{idx}"]["xlstm"]
        assert not np.any(s["recurrent_kernel"])
        cell = sLSTMCell(sLSTMCellConfig(hidden_size=D, num_heads=4, backend="vanilla", dtype="float32",
                                         _block_idx=idx, _num_blocks=4))
        with torch.no_grad():
            expected = cell.bias.clone().numpy()  # external layout (NH, 4, DH)
        np.testing.assert_allclose(s["bias"], expected, rtol=1e-6, atol=1e-6)


def test_bad_inputs_raise():
    model = XLSTMLM(MIXED)
    with pytest.raises(ValueError, match="int"):
        model.init(jax.random.key(0), jnp.zeros((2, 5)))
    params = model.init(jax.random.key(0), tokens_for(0))["params"]
    with pytest.raises(ValueError, match="positions"):
        model.apply({"params": params}, tokens_for(0), jnp.zeros((2, 3), jnp.int32))
    with pytest.raises(ValueError, match="bidirectional"):
        XLSTMConfig(vocab_size=4, bidirectional="both")
    with pytest.raises(ValueError, match="native"):
        XLSTMConfig(vocab_size=4, bidirectional="native", form="chunkwise")
    with pytest.raises(ValueError, match="complement_map"):
        XLSTMConfig(vocab_size=4, rcps=True)
    with pytest.raises(ValueError, match="slstm_at"):
        XLSTMConfig(vocab_size=4, num_blocks=2, slstm_at=(2,))


def test_chunked_prefill_equals_one_pass():
    model, tokens = XLSTMLM(MIXED), tokens_for(9, S=45)
    params = perturbed_params(model, tokens)
    full, full_state = model.apply({"params": params}, tokens, return_state=True)
    last, state = prefill(model, params, tokens, segment_length=16)  # 16 + 16 + 13
    assert_close_scaled(last, full[:, -1], 1e-5, "last logits")
    chex.assert_trees_all_close(state, full_state, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name,changes", [
    ("prot", dict(vocab_size=38, embedding_dim=64, num_blocks=3, rope="inner", chunk_size=16)),
    ("mixed", dict(vocab_size=12, embedding_dim=64, num_blocks=4, slstm_at=(1, 2), chunk_size=16)),
    ("sum_rcps", dict(vocab_size=12, embedding_dim=64, num_blocks=2, bidirectional="sum", rcps=True,
                      complement_map=COMPLEMENT, rope="head", chunk_size=8)),
    ("alternating", dict(vocab_size=12, embedding_dim=64, num_blocks=3, bidirectional="alternating",
                         mlstm_conv_causal=False, chunk_size=8)),
])
def test_remat_policies_equal_no_remat(name, changes):
    """Every remat policy, whole blocks or segments of 16 tokens (40 = 16 + 16 + 8, a reset inside the
    second segment), gives the loss and gradients of the plain block loop, for every direction mode,
    mixed block types and state passing (every variant on the Prot config, segmented blocks on the
    others); the non-causal conv of "alternating" is never segmented."""
    cfg = XLSTMConfig(**changes)
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 12, (2, 40)), jnp.int32)
    params = perturbed_params(XLSTMLM(cfg), tokens)
    resets = jnp.zeros(tokens.shape, bool).at[:, 17].set(True) if cfg.causal and not cfg.slstm_at else None

    def value_and_grad(policy, segment=16):
        model = XLSTMLM(cfg.replace(remat=policy, remat_segment=segment))
        return jax.jit(jax.value_and_grad(lambda p: jnp.mean(jnp.sin(model.apply({"params": p}, tokens,
                                                                                  resets=resets)))))(params)

    ref = value_and_grad("none")
    variants = (("block", 16), ("block", 0), ("block_save_dots", 16)) if name == "prot" else (("block", 16),)
    for policy, segment in variants:
        chex.assert_trees_all_close(value_and_grad(policy, segment), ref, atol=1e-6, rtol=1e-5)
    if cfg.causal:
        plain, remat = XLSTMLM(cfg), XLSTMLM(cfg.replace(remat="block", remat_segment=16))
        out = plain.apply({"params": params}, tokens, return_state=True)
        out_remat = remat.apply({"params": params}, tokens, return_state=True)
        chex.assert_trees_all_close(out_remat, out, atol=1e-5, rtol=1e-5)
        chex.assert_trees_all_close(remat.apply({"params": params}, tokens, None, out_remat[1]),
                                    plain.apply({"params": params}, tokens, None, out[1]), atol=1e-5, rtol=1e-5)


def test_remat_block_lowers_the_buffer_plan():
    """``remat="block"`` keeps only the blocks' inputs: at 8 blocks the planned memory of loss +
    gradients is under a third of no remat's (measured 0.15 here; a Python loop of ``nn.remat``
    blocks did not lower it at all: XLA's CPU pipeline merges the recomputation back); segments of
    256 of the 2048 tokens halve it again (measured 0.37: one segment's activations at a time)."""
    cfg = XLSTMConfig(vocab_size=38, embedding_dim=64, num_blocks=8, chunk_size=64, rope="inner")
    tokens = jax.ShapeDtypeStruct((1, 2048), jnp.int32)
    params = jax.eval_shape(lambda t: XLSTMLM(cfg).init(jax.random.key(0), t), tokens)

    def plan(policy, segment=0):
        model = XLSTMLM(cfg.replace(remat=policy, remat_segment=segment))
        fn = jax.jit(jax.grad(lambda p, t: jnp.mean(model.apply(p, t) ** 2)))
        return fn.trace(params, tokens).lower().compile().memory_analysis().temp_size_in_bytes

    whole_blocks = plan("block")
    assert whole_blocks < plan("none") / 3
    assert plan("block", 256) < whole_blocks / 2
    assert XLSTMConfig(vocab_size=5, remat=True).remat == "block" and XLSTMConfig(vocab_size=5, remat=False).remat == "none"
    with pytest.raises(ValueError, match="remat"):
        XLSTMConfig(vocab_size=5, remat="full")
    with pytest.raises(ValueError, match="remat_segment"):
        XLSTMConfig(vocab_size=5, chunk_size=64, remat="block", remat_segment=100)


def test_remat_auto_follows_the_shapes_and_the_device_memory(monkeypatch):
    """``remat="auto"`` (the default) recomputes nothing while ``activation_bytes`` of each device's
    share fits in half the device memory and runs ``"block"`` otherwise: the same program as asking for
    it; batch rows split over a mesh count per device."""
    from bioxlstm_jax.nn import activation_bytes, backbone, resolve_remat
    from bioxlstm_jax.training.mesh import make_mesh

    cfg = XLSTMConfig(vocab_size=12, embedding_dim=32, num_blocks=2, chunk_size=8, remat_segment=16)
    assert cfg.remat == "auto"
    tokens = jnp.zeros((8, 40), jnp.int32)
    need = activation_bytes(cfg, 8, 40)
    assert need == 8 * 40 * 2 * 128 * cfg.mlstm_inner_dim
    assert activation_bytes(cfg.replace(bidirectional="sum"), 8, 40) == 2 * need

    def program(c, memory):
        monkeypatch.setattr(backbone, "device_memory_bytes", lambda: memory)
        model = XLSTMLM(c)
        params = jax.eval_shape(model.init, jax.random.key(0), tokens)
        return str(jax.make_jaxpr(jax.grad(lambda p: jnp.mean(model.apply(p, tokens))))(params))

    assert program(cfg, 2 * need) == program(cfg.replace(remat="none"), 2 * need)
    assert program(cfg, 2 * need - 1) == program(cfg.replace(remat="block"), 2 * need - 1)
    assert program(cfg, 2 * need) != program(cfg.replace(remat="block"), 2 * need)
    monkeypatch.setattr(backbone, "device_memory_bytes", lambda: need)
    assert resolve_remat(cfg, 8, 40) == "block"
    with jax.set_mesh(make_mesh(data=8)):
        assert resolve_remat(cfg, 8, 40) == "none"  # one row per device
    assert resolve_remat(cfg.replace(remat="block_save_dots"), 8, 40) == "block_save_dots"
    # "auto" takes any chunk size: segments are the largest multiple of it within remat_segment
    odd = XLSTMConfig(vocab_size=12, embedding_dim=32, num_blocks=2, chunk_size=12, remat_segment=16)
    assert program(odd, 0) == program(odd.replace(remat="block", remat_segment=12), 0)
