"""sLSTM cell (scalar memory, exponential input gate, block-diagonal recurrence) as ``lax.scan``.

Equations (``docs/ops.md``, "The math"), gate order i, f, z, o::

    raw   = gates_x_t + R h_{t-1} + b                 (block-diagonal R, one block per head)
    m_t   = i~_t                          if n_{t-1} == 0   (first step)
          = max(i~_t, log_sigmoid(f~_t) + m_{t-1})      otherwise
    i'    = min(exp(i~ - m_t), 1);   f' = min(exp(log_sigmoid(f~) + m_{t-1} - m_t), 1)
    c_t   = f' c_{t-1} + i' tanh(z~);  n_t = f' n_{t-1} + i';  h_t = sigmoid(o~) c_t / n_t

Deliberate difference from the official vanilla backend: the first-step rule ``n == 0`` is applied per
element (as the official CUDA kernel does), not only when the whole state tensor is zero. Both agree
from a zero initial state; per element is the correct rule when a partly-zero state is passed in.
The clamps are computed as ``exp(min(x, 0))`` (same value as ``min(exp(x), 1)``) so that no ``inf``
appears in the backward pass.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["SLSTMState", "slstm_scan", "slstm_step"]


class SLSTMState(NamedTuple):
    """sLSTM state, each (B, NH, DH) float32: hidden h, cell c, normalizer n, stabilizer m."""

    h: jax.Array
    c: jax.Array
    n: jax.Array
    m: jax.Array

    @classmethod
    def zeros(cls, batch: int, num_heads: int, head_dim: int, dtype=jnp.float32) -> "SLSTMState":
        z = jnp.zeros((batch, num_heads, head_dim), dtype)
        return cls(z, z, z, z)


def _check_params(R, b, NH: int, DH: int) -> None:
    if R.shape != (NH, DH, 4, DH):
        raise ValueError(f"R must be (NH, DH, 4, DH) = {(NH, DH, 4, DH)}, got {R.shape}")
    if b.shape != (NH, 4, DH):
        raise ValueError(f"b must be (NH, 4, DH) = {(NH, 4, DH)}, got {b.shape}")


def _step(gates_x, R, b, state: SLSTMState) -> SLSTMState:
    """gates_x: (B, 4, NH, DH) in the compute dtype; R, b already cast."""
    h, c, n, m = state
    raw = gates_x + jnp.einsum("bhl,hlgj->bghj", h, R, precision=lax.Precision.HIGHEST) + jnp.swapaxes(b, 0, 1)
    i_raw, f_raw, z_raw, o_raw = (raw[:, g] for g in range(4))
    log_f_plus_m = m + jax.nn.log_sigmoid(f_raw)
    m_new = jnp.where(n == 0.0, i_raw, jnp.maximum(i_raw, log_f_plus_m))
    i_act = jnp.exp(jnp.minimum(i_raw - m_new, 0.0))
    f_act = jnp.exp(jnp.minimum(log_f_plus_m - m_new, 0.0))
    c_new = f_act * c + i_act * jnp.tanh(z_raw)
    n_new = f_act * n + i_act
    h_new = jax.nn.sigmoid(o_raw) * c_new / n_new
    return SLSTMState(h_new, c_new, n_new, m_new)


def _prepare(gates_x, R, b, state, NH, DH):
    ct = jnp.promote_types(gates_x.dtype, jnp.float32)
    _check_params(R, b, NH, DH)
    if state is None:
        state = SLSTMState.zeros(gates_x.shape[0], NH, DH, ct)
    expected = (gates_x.shape[0], NH, DH)
    if any(tuple(x.shape) != expected for x in state):
        raise ValueError(f"SLSTMState entries must be (B, NH, DH) = {expected}, got {[x.shape for x in state]}")
    return ct, R.astype(ct), b.astype(ct), SLSTMState(*(x.astype(ct) for x in state))


@jax.jit
def slstm_step(gates_x, R, b, state: SLSTMState | None = None):
    """One sLSTM step.

    Args:
      gates_x: (B, 4, NH, DH) input pre-activations for gates i, f, z, o.
      R: (NH, DH, 4, DH) block-diagonal recurrent weights (official external layout:
        ``Ry[b, g, h, j] = sum_l h_prev[b, h, l] R[h, l, g, j]``).
      b: (NH, 4, DH) bias.
      state: ``SLSTMState`` or None (zeros).
    Returns:
      (h: (B, NH, DH) in the dtype of ``gates_x``, new ``SLSTMState``).
    """
    if gates_x.ndim != 4 or gates_x.shape[1] != 4:
        raise ValueError(f"gates_x must be (B, 4, NH, DH), got {gates_x.shape}")
    _, _, NH, DH = gates_x.shape
    ct, R, b, state = _prepare(gates_x, R, b, state, NH, DH)
    new = _step(gates_x.astype(ct), R, b, state)
    return new.h.astype(gates_x.dtype), new


@jax.jit
def slstm_scan(gates_x, R, b, *, initial_state: SLSTMState | None = None):
    """sLSTM over a sequence.

    Args:
      gates_x: (B, S, 4, NH, DH) input pre-activations (gate order i, f, z, o).
      R: (NH, DH, 4, DH); b: (NH, 4, DH); initial_state: ``SLSTMState`` or None (zeros).
    Returns:
      (h: (B, S, NH, DH) in the dtype of ``gates_x``, last ``SLSTMState``).
    """
    if gates_x.ndim != 5 or gates_x.shape[2] != 4:
        raise ValueError(f"gates_x must be (B, S, 4, NH, DH), got {gates_x.shape}")
    _, _, _, NH, DH = gates_x.shape
    ct, R, b, state = _prepare(gates_x, R, b, initial_state, NH, DH)

    def body(carry, x_t):
        new = _step(x_t, R, b, carry)
        return new, new.h

    last, h = lax.scan(body, state, jnp.moveaxis(gates_x.astype(ct), 1, 0))
    return jnp.moveaxis(h, 0, 1).astype(gates_x.dtype), last
