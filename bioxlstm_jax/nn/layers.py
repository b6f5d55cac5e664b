"""mLSTM layer, sLSTM layer and gated feed-forward, with the official parametrisation and initialisation.

Parameter names follow the official PyTorch modules (``proj_up``, ``conv1d``, ``q_proj``, ``igate``,
``outnorm``, ``learnable_skip``, ``recurrent_kernel``, ...); Dense kernels are the torch weights
transposed. One deliberate difference in naming: our sLSTM ``igate`` produces the input-gate
pre-activation and ``fgate`` the forget gate; the official modules have the two names swapped
(``fgate`` feeds the input gate), which ``bioxlstm_jax.convert`` undoes.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from bioxlstm_jax import ops
from bioxlstm_jax.nn.components import DepthwiseConv1d, LinearHeadwiseExpand, MultiHeadLayerNorm, silu
from bioxlstm_jax.nn.config import XLSTMConfig
from bioxlstm_jax.nn.rope import apply_rope

__all__ = ["MLSTMLayer", "SLSTMLayer", "GatedFeedForward", "small_init", "wang_init"]

State = dict[str, Any]


def small_init(dim: int):
    """N(0, sqrt(2 / (5 dim))) (Nguyen & Salazar 2019), the official ``small_init_init_``."""
    return nn.initializers.normal(math.sqrt(2.0 / (5.0 * dim)))


def wang_init(dim: int, num_blocks: int):
    """N(0, 2 / (num_blocks sqrt(dim))), the official ``wang_init_`` for output projections."""
    return nn.initializers.normal(2.0 / num_blocks / math.sqrt(dim))


def _linspace_init(start: float, end: float):
    return lambda key, shape, dtype=jnp.float32: jnp.linspace(start, end, shape[0], dtype=dtype)


def _dense(features, cfg, name, init, use_bias=False):
    return nn.Dense(
        features,
        use_bias=use_bias,
        kernel_init=init,
        dtype=jnp.dtype(cfg.dtype),
        param_dtype=jnp.float32,
        name=name,
    )


class _GateParams(nn.Module):
    """The ``kernel`` (in, features) (zero init) and ``bias`` (features,) of one gate's ``nn.Dense``, float32."""

    features: int
    bias_init: Any

    @nn.compact
    def __call__(self, in_features: int):
        kernel = self.param("kernel", nn.initializers.zeros_init(), (in_features, self.features), jnp.float32)
        return kernel, self.param("bias", self.bias_init, (self.features,), jnp.float32)


def _gates(xs, params):
    """The gates' pre-activations, ``concatenate(xs, -1) @ kernel + bias`` for each (kernel, bias) in
    ``params``, without building the concatenation: one matmul per part of ``xs`` with its rows of all
    the gates' kernels side by side (the gates read q, k and v; the concatenation and its gradient
    would be 2 x 3 inner dims per token, and a matmul per gate would read each part once per gate)."""
    kernel = jnp.concatenate([k for k, _ in params], axis=-1)
    out, start = jnp.concatenate([b for _, b in params]), 0
    for x in xs:
        n = x.shape[-1]
        out = out + jnp.dot(x.astype(jnp.float32), kernel[start:start + n])
        start += n
    return jnp.split(out, list(itertools.accumulate(k.shape[-1] for k, _ in params))[:-1], axis=-1)


class MLSTMLayer(nn.Module):
    """The mLSTM layer: x (B, S, D) -> (B, S, D).

    ``proj_up`` -> (x_m, z); c = SiLU(conv(x_m)); q, k from c, v from x_m (block-diagonal); gates from
    concat(q, k, v); cell; per-head norm; ``(h + learnable_skip * c) * SiLU(z)``; ``proj_down``.

    Call: ``(x, rope=None, state=None, resets=None) -> (y, new_state or None)`` where ``rope`` is
    (cos, sin) of shape (B, S, I/2) (``config.rope="inner"``) or (B, S, 1, DH/2) (``"head"``) and
    ``state`` is ``{"mlstm": MLSTMState, "conv": (B, KS-1, I)}``. The parallel form runs only when no
    state goes in or out and there are no resets; otherwise the chunkwise form (one token with a
    state: the recurrent step).

    ``summarize=True`` (context parallelism) computes no output: ``state["mlstm"]`` is then an
    ``MLSTMSummary`` of the tokens before x (None: none) and the call returns ``(None, {"mlstm": the
    summary after x, "conv": conv state})``.
    """

    config: XLSTMConfig
    block_idx: int = 0
    return_state: bool = False

    @nn.compact
    def __call__(self, x, rope=None, state: State | None = None, resets=None, summarize: bool = False):
        cfg = self.config
        B, S, D = x.shape
        I, NH, DH = cfg.mlstm_inner_dim, cfg.mlstm_num_heads, cfg.mlstm_head_dim
        x_inner = _dense(2 * I, cfg, "proj_up", small_init(D), cfg.bias)(x)
        x_m, z = jnp.split(x_inner, 2, axis=-1)
        conv = DepthwiseConv1d(cfg.conv1d_kernel_size, causal=cfg.mlstm_conv_causal, name="conv1d")
        c, conv_state = conv(x_m, None if state is None else state["conv"], resets=resets)
        c = silu(c)
        headwise = dict(num_heads=I // cfg.qkv_proj_blocksize, use_bias=cfg.bias, init_dim=D)
        q = LinearHeadwiseExpand(**headwise, name="q_proj")(c)
        k = LinearHeadwiseExpand(**headwise, name="k_proj")(c)
        v = LinearHeadwiseExpand(**headwise, name="v_proj")(x_m)
        if cfg.rope == "inner":
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        i_pre, f_pre = _gates((q, k, v), [_GateParams(NH, nn.initializers.normal(0.1), name="igate")(3 * I),
                                          _GateParams(NH, _linspace_init(3.0, 6.0), name="fgate")(3 * I)])
        q, k, v = (t.reshape(B, S, NH, DH) for t in (q, k, v))
        if cfg.rope == "head":
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        q, k, v = (jnp.swapaxes(t, 1, 2) for t in (q, k, v))  # (B, NH, S, DH)
        i_pre, f_pre = jnp.swapaxes(i_pre, 1, 2), jnp.swapaxes(f_pre, 1, 2)  # (B, NH, S)

        cell_state = None if state is None else state["mlstm"]
        if summarize:
            return None, {"mlstm": ops.mlstm_summary(k, v, i_pre, f_pre, resets=resets, entering=cell_state),
                          "conv": conv_state}
        new_cell_state = None
        if cell_state is None and not self.return_state and resets is None and cfg.form == "parallel":
            h = ops.mlstm_parallel(q, k, v, i_pre, f_pre, eps=cfg.eps, causal=cfg.bidirectional != "native")
        elif S == 1 and cell_state is not None and resets is None:
            h, new_cell_state = ops.mlstm_step(q[:, :, 0], k[:, :, 0], v[:, :, 0], i_pre[..., 0], f_pre[..., 0],
                                               cell_state, eps=cfg.eps)
            h = h[:, :, None]
        else:
            h, new_cell_state = ops.mlstm_chunkwise(
                q, k, v, i_pre, f_pre, chunk_size=cfg.chunk_size, initial_state=cell_state,
                return_last_state=True, resets=resets, eps=cfg.eps, kernel=cfg.kernel,
            )
        h = MultiHeadLayerNorm(name="outnorm")(jnp.swapaxes(h, 1, 2)).reshape(B, S, I)
        skip = self.param("learnable_skip", nn.initializers.ones_init(), (I,), jnp.float32)
        h = (h + skip.astype(c.dtype) * c) * silu(z)
        y = _dense(D, cfg, "proj_down", wang_init(D, cfg.num_blocks), cfg.bias)(h)
        new_state = {"mlstm": new_cell_state, "conv": conv_state} if self.return_state else None
        return y, new_state


def _slstm_bias_init(cfg: XLSTMConfig, block_idx: int):
    NH, DH = cfg.slstm_num_heads, cfg.slstm_head_dim

    def init(key, shape, dtype=jnp.float32):
        del key
        b = jnp.zeros((NH, 4, DH), dtype)
        if cfg.slstm_bias_init == "powerlaw_blockdependent":
            ratio = block_idx / (cfg.num_blocks - 1) if cfg.num_blocks > 1 else 0.0
            j = jnp.arange(DH, dtype=dtype) / max(DH - 1, 1)
            f = -(-5.0 + 12.0 * j ** (0.3 + 1.3 * ratio))
            b = b.at[:, 1].set(f)
        elif cfg.slstm_bias_init == "small_init":
            b = b.at[:, 1].set(jnp.linspace(3.0, 6.0, DH, dtype=dtype))
        return b

    return init


class SLSTMLayer(nn.Module):
    """The sLSTM layer: x (B, S, D) -> (B, S, D).

    c = SiLU(conv(x)); gate pre-activations i, f from c and z, o from x (block-diagonal, one block per
    head, no bias); sLSTM scan with recurrent kernel (NH, DH, 4, DH) (zero init) and bias (NH, 4, DH)
    (power-law block-dependent forget bias); per-head norm. ``state`` is
    ``{"slstm": SLSTMState, "conv": (B, KS-1, D)}``.
    """

    config: XLSTMConfig
    block_idx: int = 0
    return_state: bool = False

    @nn.compact
    def __call__(self, x, rope=None, state: State | None = None, resets=None, summarize: bool = False):
        del rope
        if summarize:
            raise ValueError("sLSTM blocks cannot be split over the sequence (mesh axis 'context'): the sLSTM is a "
                             "nonlinear recurrence with no state summary; train models with sLSTM blocks with "
                             "--config.mesh.context=1")
        if resets is not None:
            raise ValueError("resets (packed documents) are supported by mLSTM blocks only, not sLSTM blocks")
        cfg = self.config
        B, S, D = x.shape
        NH, DH = cfg.slstm_num_heads, cfg.slstm_head_dim
        conv = DepthwiseConv1d(cfg.slstm_conv1d_kernel_size, causal=cfg.slstm_conv_causal, name="conv1d")
        c, conv_state = conv(x, None if state is None else state["conv"])
        c = silu(c)
        headwise = dict(num_heads=NH, init_dim=D)
        gates = [
            LinearHeadwiseExpand(**headwise, name="igate")(c),
            LinearHeadwiseExpand(**headwise, name="fgate")(c),
            LinearHeadwiseExpand(**headwise, name="zgate")(x),
            LinearHeadwiseExpand(**headwise, name="ogate")(x),
        ]
        gates_x = jnp.stack(gates, axis=2).reshape(B, S, 4, NH, DH)
        R = self.param("recurrent_kernel", nn.initializers.zeros_init(), (NH, DH, 4, DH), jnp.float32)
        b = self.param("bias", _slstm_bias_init(cfg, self.block_idx), (NH, 4, DH), jnp.float32)
        h, last = ops.slstm_scan(gates_x, R, b, initial_state=None if state is None else state["slstm"])
        y = MultiHeadLayerNorm(name="group_norm")(h).reshape(B, S, D)
        new_state = {"slstm": last, "conv": conv_state} if self.return_state else None
        return y, new_state


class GatedFeedForward(nn.Module):
    """x (B, S, D) -> (B, S, D): ``proj_down(gelu(gate) * up)`` with ``(gate, up) = proj_up(x)``, exact GELU."""

    config: XLSTMConfig

    @nn.compact
    def __call__(self, x):
        cfg = self.config
        D, F = x.shape[-1], cfg.ffn_dim
        gate, up = jnp.split(_dense(2 * F, cfg, "proj_up", small_init(D))(x), 2, axis=-1)
        return _dense(D, cfg, "proj_down", wang_init(D, cfg.num_blocks))(jax.nn.gelu(gate, approximate=False) * up)
