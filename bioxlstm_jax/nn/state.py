"""Recurrent state of an ``XLSTMLM`` and prompt prefill.

State: a tuple with one dict per block, ``{"mlstm": MLSTMState, "conv": (B, KS-1, I)}`` or
``{"slstm": SLSTMState, "conv": (B, KS-1, D)}`` (``zero_state``). ``prefill`` runs a prompt of any
length in segments (split over devices with ``context_devices``); ``forward_with_state`` is one jitted
segment (logits and the state after it).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from bioxlstm_jax import ops
from bioxlstm_jax.nn.config import XLSTMConfig

__all__ = ["zero_state", "block_zero_state", "prefill", "forward_with_state", "CONTEXT_AXIS"]

CONTEXT_AXIS = "context"  # the mesh axis a sequence is split over (``nn.backbone.context_shards``)


def zero_state(config: XLSTMConfig, batch_size: int) -> tuple[dict[str, Any], ...]:
    """The state before the first token (all zeros), one dict per block."""
    return tuple(block_zero_state(config, kind, batch_size) for kind in config.block_types)


def block_zero_state(cfg: XLSTMConfig, kind: str, batch_size: int) -> dict[str, Any]:
    """The zero state of one block of ``kind`` ("m" for mLSTM, "s" for sLSTM)."""
    if kind == "m":
        cell = ops.MLSTMState.zeros(batch_size, cfg.mlstm_num_heads, cfg.mlstm_head_dim, cfg.mlstm_head_dim)
        conv = jnp.zeros((batch_size, cfg.conv1d_kernel_size - 1, cfg.mlstm_inner_dim), cfg.dtype)
        return {"mlstm": cell, "conv": conv}
    cell = ops.SLSTMState.zeros(batch_size, cfg.slstm_num_heads, cfg.slstm_head_dim)
    conv = jnp.zeros((batch_size, cfg.slstm_conv1d_kernel_size - 1, cfg.embedding_dim), cfg.dtype)
    return {"slstm": cell, "conv": conv}


def prefill(model, params, tokens, positions=None, state=None, *, segment_length: int = 4096,
            context_devices: int = 1):
    """Run a prompt of any length through a causal ``XLSTMLM`` in segments; memory is bounded by one
    segment's activations and the recurrent state.

    Args:
      model, params: the language model and its params.
      tokens: (B, S) int prompt; positions: (B, S) int (default ``arange(S)``); state: to continue from.
      segment_length: tokens per forward pass (at most three shapes are compiled).
      context_devices: split each segment over this many devices (the first of ``jax.devices()``; context
        parallelism, exact): each holds ``segment_length / context_devices`` tokens' activations. A last
        stretch too short to split (fewer than ``context_devices`` x (conv kernel size - 1) tokens, or the
        remainder of a division by ``context_devices``) runs unsplit.
    Returns:
      (logits of the last prompt token (B, V) float32, state after the prompt), on the first device.
    """
    B, S = tokens.shape
    if S == 0:
        raise ValueError("prefill needs at least one token")
    if segment_length < 1:
        raise ValueError(f"segment_length must be >= 1, got {segment_length}")
    context = context_devices
    if context < 1 or context > jax.device_count() or segment_length % context:
        raise ValueError(f"context_devices={context}: expected a device count (1..{jax.device_count()}) that divides "
                         f"segment_length={segment_length}")
    if positions is None:
        positions = jnp.broadcast_to(jnp.arange(S, dtype=jnp.int32), (B, S))
    if state is None:
        state = zero_state(model.config, B)
    device = jax.devices()[0]
    mesh = split_params = None
    if context > 1:
        mesh = jax.make_mesh((context,), (CONTEXT_AXIS,), axis_types=(AxisType.Auto,), devices=jax.devices()[:context])
        split_params = jax.device_put(params, NamedSharding(mesh, PartitionSpec()))
    min_split = context * max(model.config.conv1d_kernel_size - 1, 1)
    start = 0
    while start < S:
        n = min(segment_length, S - start)
        split = n // context * context if mesh is not None and n >= min_split else 0
        if split:
            seq = NamedSharding(mesh, PartitionSpec(None, CONTEXT_AXIS))
            with jax.set_mesh(mesh):
                logits, state = forward_with_state(model, split_params,
                                                   *(jax.device_put(x[:, start:start + split], seq)
                                                     for x in (tokens, positions)),
                                                   jax.device_put(state, NamedSharding(mesh, PartitionSpec())))
            state = jax.device_put(state, device)
            start += split
        else:
            logits, state = forward_with_state(model, params, tokens[:, start:start + n], positions[:, start:start + n],
                                               state)
            start += n
    return jax.device_put(logits[:, -1], device), state


@functools.partial(jax.jit, static_argnums=0)
def forward_with_state(model, params, tokens, positions, state):
    """``model.apply`` with ``return_state=True``, jitted per model: tokens, positions (B, S) int and a
    state -> (logits (B, S, V), new state)."""
    return model.apply({"params": params}, tokens, positions, state, return_state=True)
