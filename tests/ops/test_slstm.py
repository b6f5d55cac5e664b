"""sLSTM scan and step agree, pass state, and keep finite values and gradients under extreme inputs."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bioxlstm_jax.ops import SLSTMState, slstm_scan, slstm_step


def _inputs(seed, B=2, S=30, NH=2, DH=8, scale=1.0):
    rng = np.random.default_rng(seed)
    gates_x = jnp.asarray(rng.normal(size=(B, S, 4, NH, DH)) * scale, jnp.float32)
    R = jnp.asarray(rng.normal(size=(NH, DH, 4, DH)) / np.sqrt(DH), jnp.float32)
    b = jnp.asarray(rng.normal(size=(NH, 4, DH)), jnp.float32)
    return gates_x, R, b


def test_step_repeated_equals_scan():
    gates_x, R, b = _inputs(0)
    h_scan, last_scan = slstm_scan(gates_x, R, b)
    chex.assert_shape(h_scan, (2, 30, 2, 8))
    state = None
    for t in range(gates_x.shape[1]):
        h_t, state = slstm_step(gates_x[:, t], R, b, state)
        chex.assert_trees_all_close(h_t, h_scan[:, t], atol=1e-6, rtol=1e-6)
    chex.assert_trees_all_close(state, last_scan, atol=1e-6, rtol=1e-6)
    assert all(x.dtype == jnp.float32 for x in last_scan)


def test_state_passing():
    gates_x, R, b = _inputs(1, S=40)
    h_full, last_full = slstm_scan(gates_x, R, b)
    h1, s1 = slstm_scan(gates_x[:, :17], R, b)
    h2, s2 = slstm_scan(gates_x[:, 17:], R, b, initial_state=s1)
    chex.assert_trees_all_close(jnp.concatenate([h1, h2], axis=1), h_full, atol=1e-6, rtol=1e-6)
    chex.assert_trees_all_close(s2, last_full, atol=1e-6, rtol=1e-6)


def test_normalizer_at_least_one_and_h_bounded():
    """From a zero state n_t >= 1 and |h| <= 1 (one of the clamped gates is 1 at every step)."""
    gates_x, R, b = _inputs(2, S=200, scale=5.0)
    h, last = slstm_scan(gates_x, R, b)
    assert float(jnp.min(last.n)) >= 1.0 - 1e-6
    assert float(jnp.max(jnp.abs(h))) <= 1.0 + 1e-6


def test_first_step_rule_is_per_element():
    """m <- i~ wherever n == 0, even when other entries of the state are nonzero (the official CUDA rule;
    the official vanilla code only applies it when the whole state is zero)."""
    gates_x, R, b = _inputs(3, B=1, S=1, NH=1, DH=4)
    n = jnp.asarray([[[0.0, 2.0, 0.0, 1.0]]])
    state = SLSTMState(jnp.zeros_like(n), jnp.ones_like(n), n, jnp.full_like(n, 7.0))
    _, new = slstm_step(gates_x[:, 0], R, b, state)
    raw = gates_x[0, 0, :, 0] + b[0] + jnp.einsum("l,lgj->gj", state.h[0, 0], R[0])  # (4, DH)
    expected = jnp.where(n[0, 0] == 0, raw[0], jnp.maximum(raw[0], jax.nn.log_sigmoid(raw[1]) + 7.0))
    np.testing.assert_allclose(new.m[0, 0], expected, rtol=1e-6)
    assert not np.allclose(expected[1], raw[0, 1])  # the max branch was taken where n != 0


@pytest.mark.parametrize("scale", [30.0, 1e3])
def test_gradients_finite_under_extreme_preactivations(scale):
    gates_x, R, b = _inputs(4, S=64, scale=scale)

    def loss(gates_x, R, b):
        h, last = slstm_scan(gates_x, R, b)
        return jnp.sum(h**2) + jnp.sum(last.c)

    value, grads = jax.value_and_grad(loss, argnums=(0, 1, 2))(gates_x, R, b)
    assert np.isfinite(float(value))
    for g in grads:
        assert np.all(np.isfinite(np.asarray(g)))
    assert float(jnp.max(jnp.abs(grads[0]))) > 0


def test_bf16_inputs_give_bf16_outputs_float32_state():
    gates_x, R, b = _inputs(5)
    h16, last16 = slstm_scan(gates_x.astype(jnp.bfloat16), R, b)
    h32, _ = slstm_scan(gates_x.astype(jnp.bfloat16).astype(jnp.float32), R, b)
    assert h16.dtype == jnp.bfloat16 and last16.c.dtype == jnp.float32
    chex.assert_trees_all_close(h16.astype(jnp.float32), h32, atol=1e-2, rtol=1e-2)


def test_bad_shapes_raise():
    gates_x, R, b = _inputs(6)
    with pytest.raises(ValueError, match="gates_x must be"):
        slstm_scan(gates_x[:, :, :3], R, b)
    with pytest.raises(ValueError, match="R must be"):
        slstm_scan(gates_x, R[:, :4], b)
    with pytest.raises(ValueError, match="b must be"):
        slstm_scan(gates_x, R, b[:1])
    with pytest.raises(ValueError, match="SLSTMState entries"):
        slstm_scan(gates_x, R, b, initial_state=SLSTMState.zeros(2, 2, 4))
