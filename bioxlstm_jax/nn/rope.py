"""Rotary position embeddings with interleaved pairs, as Prot-xLSTM and DNA-xLSTM apply them.

Pair ``(x[2j], x[2j+1])`` at position ``p`` is rotated by the angle ``p * base**(-2j / dim)``.
Prot-xLSTM rotates the whole mLSTM inner vector (``dim`` = inner dim, so each head sees a different
frequency band); DNA-xLSTM rotates each head (``dim`` = head dim, the same frequencies in every head).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["rope_angles", "apply_rope"]


def rope_angles(positions: jax.Array, dim: int, base: float = 500_000.0) -> tuple[jax.Array, jax.Array]:
    """cos and sin of the rotation angles: positions (...,) int -> two float32 arrays (..., dim // 2)."""
    if dim % 2:
        raise ValueError(f"RoPE needs an even dimension, got {dim}")
    inv_freq = base ** (-jnp.arange(0, dim, 2, dtype=jnp.float32) / dim)
    angles = positions.astype(jnp.float32)[..., None] * inv_freq
    return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotate interleaved pairs of the last axis: x (..., dim), cos/sin broadcastable to (..., dim // 2).

    Computed in float32, returned in the dtype of ``x``.
    """
    x32 = x.astype(jnp.float32).reshape(*x.shape[:-1], x.shape[-1] // 2, 2)
    re, im = x32[..., 0], x32[..., 1]
    out = jnp.stack([re * cos - im * sin, re * sin + im * cos], axis=-1)
    return out.reshape(x.shape).astype(x.dtype)
