"""Small xLSTM building blocks with the official parametrisation and initialisation (NX-AI/xlstm 2024).

Parameter names and layouts follow the official PyTorch modules so that weight conversion is a
transpose at most: LayerNorm ``weight`` (scale ``1 + weight``, no bias), depthwise causal conv
``kernel`` (KS, D) (torch ``conv.weight`` (D, 1, KS) transposed), headwise ``weight`` (NH, out/NH, in/NH).
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["LayerNorm", "MultiHeadLayerNorm", "DepthwiseConv1d", "LinearHeadwiseExpand", "silu"]

# Custom VJPs below save only their inputs (autodiff would keep 2-4 intermediates of the input's size
# for the backward pass); the backward recomputes the rest. Same forward, same gradient to rounding.


@jax.custom_vjp
def silu(x):
    """``x * sigmoid(x)`` (``jax.nn.silu``); the backward pass keeps x only."""
    return x * jax.nn.sigmoid(x)


def _silu_fwd(x):
    return silu(x), x


def _silu_bwd(x, g):
    s = jax.nn.sigmoid(x)
    return (g * (s * (1 + x * (1 - s))),)


silu.defvjp(_silu_fwd, _silu_bwd)


def _normalize(x, eps):
    x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    return (x32 - mean) * jax.lax.rsqrt(var + eps), jax.lax.rsqrt(var + eps)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _scaled_layer_norm(x, scale, eps):
    """``normalize(x) * scale`` over the last axis, statistics in float32, output in x's dtype; scale
    broadcasts against x's trailing axes. The backward pass keeps x only."""
    return (_normalize(x, eps)[0] * scale).astype(x.dtype)


def _scaled_layer_norm_fwd(x, scale, eps):
    return _scaled_layer_norm(x, scale, eps), (x, scale)


def _scaled_layer_norm_bwd(eps, res, g):
    x, scale = res
    y, rstd = _normalize(x, eps)
    g32 = g.astype(y.dtype)
    lead = tuple(range(g.ndim - scale.ndim))
    d_scale = jnp.sum(g32 * y, axis=lead).astype(scale.dtype)
    gy = g32 * scale
    dx = rstd * (gy - jnp.mean(gy, axis=-1, keepdims=True) - y * jnp.mean(gy * y, axis=-1, keepdims=True))
    return dx.astype(x.dtype), d_scale


_scaled_layer_norm.defvjp(_scaled_layer_norm_fwd, _scaled_layer_norm_bwd)


class LayerNorm(nn.Module):
    """LayerNorm over the last axis with scale ``1 + weight`` (weight initialised to 0), no bias, eps 1e-5.

    Statistics in float32; output in the input dtype.
    """

    eps: float = 1e-5

    @nn.compact
    def __call__(self, x):
        weight = self.param("weight", nn.initializers.zeros_init(), (x.shape[-1],), jnp.float32)
        return _scaled_layer_norm(x, 1.0 + weight, self.eps)


class MultiHeadLayerNorm(nn.Module):
    """Per-head LayerNorm (the official group norm with NH groups): x (..., NH, DH) -> (..., NH, DH).

    One ``weight`` of size NH * DH (scale ``1 + weight``), no bias, eps 1e-5.
    """

    eps: float = 1e-5

    @nn.compact
    def __call__(self, x):
        NH, DH = x.shape[-2:]
        weight = self.param("weight", nn.initializers.zeros_init(), (NH * DH,), jnp.float32)
        return _scaled_layer_norm(x, 1.0 + weight.reshape(NH, DH), self.eps)


def _torch_conv_init(fan_in: int):
    """PyTorch's default Conv1d init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias."""
    bound = 1.0 / math.sqrt(fan_in)
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


class DepthwiseConv1d(nn.Module):
    """Depthwise conv over time: x (B, S, D) -> (B, S, D), the official xLSTM ``CausalConv1d``.

    ``causal=True``: ``y_t = sum_j kernel[j] x_{t-KS+1+j} + bias``. ``causal=False`` is DNA-xLSTM's
    ``padding="same"`` (PyTorch pads (KS-1)//2 on the left, the rest on the right; no state).
    ``state`` (B, KS-1, D) holds the previous KS-1 inputs (zeros at the start); ``__call__`` returns
    ``(y, new_state)`` so prefill and one-token steps (S = 1) share one code path.
    ``resets`` (B, S) bool (causal only) marks document starts in packed rows: inputs from before a
    reset (the state included) do not reach outputs after it, in this call or later ones (the new
    state holds zeros for them).
    """

    kernel_size: int = 4
    causal: bool = True
    use_bias: bool = True

    @nn.compact
    def __call__(self, x, state=None, resets=None):
        B, S, D = x.shape
        KS = self.kernel_size
        init = _torch_conv_init(KS)
        kernel = self.param("kernel", init, (KS, D), jnp.float32).astype(x.dtype)
        if self.causal:
            if state is None:
                state = jnp.zeros((B, KS - 1, D), x.dtype)
            if state.shape != (B, KS - 1, D):
                raise ValueError(f"conv state must be (B, KS-1, D) = {(B, KS - 1, D)}, got {state.shape}")
            state = state.astype(x.dtype)
            new_state = jnp.concatenate([state, x], axis=1)[:, S:]

            def window(j):  # [state, x][:, j : j + S], built from shifted pieces of x and the state: the
                # concatenated (B, S + KS - 1, D) input is never stored (32 x 100 x 1024: fwd + bwd 2.2x faster)
                shift = KS - 1 - j
                if shift == 0:
                    return x
                if S <= shift:
                    return state[:, j:j + S]
                return jnp.concatenate([state[:, j:], x[:, :S - shift]], axis=1)
        else:
            if state is not None or resets is not None:
                raise ValueError("a non-causal ('same') conv takes no state and no resets")
            left = (KS - 1) // 2
            xs = jnp.pad(x, ((0, 0), (left, KS - 1 - left), (0, 0)))
            new_state = None

            def window(j):
                return xs[:, j:j + S]
        if resets is None:
            y = sum(window(j) * kernel[j] for j in range(KS))
        else:
            seg = jnp.cumsum(resets.astype(jnp.int32), axis=1)  # (B, S); the state is segment 0
            seg = jnp.pad(seg, ((0, 0), (KS - 1, 0)))
            same = [(seg[:, j : j + S] == seg[:, KS - 1 :])[..., None] for j in range(KS)]
            y = sum(jnp.where(same[j], window(j), 0) * kernel[j] for j in range(KS))
            if new_state is not None:  # nor do they reach the next call: zero them in the state (a zero adds nothing)
                new_state = jnp.where((seg[:, S:] == seg[:, -1:])[..., None], new_state, 0)
        if self.use_bias:
            y = y + self.param("bias", init, (D,), jnp.float32).astype(x.dtype)
        return y, new_state


_UNROLL_MAX = 8  # blocks up to this size use the unrolled multiply-add below


@jax.custom_vjp
def _small_blocks(xh: jax.Array, w: jax.Array) -> jax.Array:
    """``einsum("...hd,hod->...ho")`` for tiny blocks (d, o <= 8) as d broadcast multiply-adds in
    float32, with a custom VJP (dx unrolled the same way, dW one fused broadcast-reduce over the
    tokens). XLA's CPU einsum and autodiff run these many tiny products slowly: at 3200 tokens x
    256 blocks of 4 x 4, forward+backward 7.7 ms here vs 31 ms."""
    x32, w32 = xh.astype(jnp.float32), w.astype(jnp.float32)
    return sum(x32[..., :, None, k] * w32[:, :, k] for k in range(w.shape[-1])).astype(xh.dtype)


def _small_blocks_fwd(xh, w):
    return _small_blocks(xh, w), (xh, w)


def _small_blocks_bwd(res, g):
    xh, w = res
    g32, w32 = g.astype(jnp.float32), w.astype(jnp.float32)
    dx = sum(g32[..., :, j, None] * w32[:, j, :] for j in range(w.shape[1])).astype(xh.dtype)
    x32, lead = xh.astype(jnp.float32), tuple(range(g.ndim - 2))
    # One broadcast multiply-reduce per output column: the (..., NH, in) product, never (..., NH, out, in).
    dw = jnp.stack([jnp.sum(g32[..., j, None] * x32, axis=lead) for j in range(w.shape[1])], -2)
    return dx, dw.astype(w.dtype)


_small_blocks.defvjp(_small_blocks_fwd, _small_blocks_bwd)


class LinearHeadwiseExpand(nn.Module):
    """Block-diagonal linear map: x (..., D) -> (..., D * expand), one (D/NH -> D*expand/NH) block per head.

    ``weight`` (NH, out/NH, in/NH) ~ N(0, sqrt(2 / (5 init_dim))) (the official small init; ``init_dim``
    defaults to in/NH, the xLSTM layers pass the embedding dim), optional zero bias.
    """

    num_heads: int
    expand: int = 1
    use_bias: bool = False
    init_dim: int | None = None

    @nn.compact
    def __call__(self, x):
        D = x.shape[-1]
        if D % self.num_heads:
            raise ValueError(f"in_features {D} must be a multiple of num_heads {self.num_heads}")
        d_in = D // self.num_heads
        d_out = d_in * self.expand
        std = math.sqrt(2.0 / 5.0 / (self.init_dim or d_in))
        weight = self.param("weight", nn.initializers.normal(std), (self.num_heads, d_out, d_in), jnp.float32)
        xh = x.reshape(*x.shape[:-1], self.num_heads, d_in)
        if d_in <= _UNROLL_MAX and d_out <= _UNROLL_MAX:
            y = _small_blocks(xh, weight.astype(x.dtype))
        else:
            y = jnp.einsum("...hd,hod->...ho", xh, weight.astype(x.dtype), precision=jax.lax.Precision.HIGHEST)
        y = y.reshape(*x.shape[:-1], self.num_heads * d_out)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros_init(), (self.num_heads * d_out,), jnp.float32).astype(x.dtype)
        return y
