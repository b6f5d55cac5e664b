"""xLSTM residual blocks, the block stack (with DNA-xLSTM's bidirectional and RC modes), the language
model ``XLSTMLM`` and the sequence classifier ``XLSTMClassifier``.

Parameter tree of ``XLSTMLM``::

    backbone/token_embedding/embedding (V, D)
    backbone/block_{i}/xlstm_norm/weight, backbone/block_{i}/xlstm/...   (MLSTMLayer or SLSTMLayer)
    backbone/block_{i}/ffn_norm/weight, backbone/block_{i}/ffn/...       (sLSTM blocks only)
    backbone/post_blocks_norm/weight
    lm_head/kernel (D, V)                                                (absent if tie_weights)

Rematerialisation (``XLSTMConfig.remat``): with ``"block"`` or ``"block_save_dots"`` each run of
consecutive blocks of one type is a ``lax.scan`` over the blocks' parameters (stacked at apply time;
the parameter tree is unchanged) of a ``jax.checkpoint``-ed block, so the forward pass keeps only the
blocks' inputs. A Python loop of ``nn.remat`` blocks does not: XLA's CPU pipeline drops the
optimization barriers that keep common-subexpression elimination from merging the recomputation
with the forward pass, so its buffer plan is the same as without remat (measured). The scan's
backward loop is a separate computation, which nothing can merge back. A block whose passes are causal
and chunkwise goes further when S > ``remat_segment``: each pass is itself a scan over segments of
``remat_segment`` tokens of a checkpointed block, its state (mLSTM C, n, m and the conv's last inputs)
carried between segments, so the forward keeps each segment's input and entering state and the
backward holds one segment's activations at a time (prot_xlstm_26m at S = 16k: 103 KiB per token
planned for a training step, against 196 KiB with whole blocks and 2,020 KiB without remat).

Recurrent state: a tuple with one dict per block, ``{"mlstm": MLSTMState, "conv": (B, KS-1, I)}`` or
``{"slstm": SLSTMState, "conv": (B, KS-1, D)}`` (see ``zero_state``).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from bioxlstm_jax import ops
from bioxlstm_jax.nn.components import LayerNorm
from bioxlstm_jax.nn.config import XLSTMConfig
from bioxlstm_jax.nn.layers import GatedFeedForward, MLSTMLayer, SLSTMLayer, small_init
from bioxlstm_jax.nn.rope import rope_angles

__all__ = [
    "XLSTMBlock",
    "XLSTMBackbone",
    "XLSTMLM",
    "XLSTMClassifier",
    "zero_state",
    "prefill",
    "reverse_complement",
    "rc_augment",
    "POOLINGS",
]

POOLINGS = ("mean", "first", "last")


def reverse_complement(tokens: jax.Array, complement_map) -> jax.Array:
    """Reverse complement of token ids: (B, S) int -> (B, S), flipped in time, each id complemented."""
    return jnp.flip(jnp.asarray(complement_map, jnp.int32)[tokens], axis=1)


def rc_augment(key: jax.Array, tokens: jax.Array, complement_map, p: float = 0.5) -> jax.Array:
    """Replace each row of tokens (B, S) by its reverse complement with probability ``p``."""
    flip = jax.random.bernoulli(key, p, (tokens.shape[0], 1))
    return jnp.where(flip, reverse_complement(tokens, complement_map), tokens)


def _flip_lc(x):
    """Flip time and channels: the reverse complement of an RC-equivariant feature half (B, S, C)."""
    return jnp.flip(x, axis=(1, 2))


def zero_state(config: XLSTMConfig, batch_size: int) -> tuple[dict[str, Any], ...]:
    """The state before the first token (all zeros), one dict per block."""
    return tuple(_block_zero_state(config, kind, batch_size) for kind in config.block_types)


def _block_zero_state(cfg: XLSTMConfig, kind: str, batch_size: int) -> dict[str, Any]:
    if kind == "m":
        cell = ops.MLSTMState.zeros(batch_size, cfg.mlstm_num_heads, cfg.mlstm_head_dim, cfg.mlstm_head_dim)
        conv = jnp.zeros((batch_size, cfg.conv1d_kernel_size - 1, cfg.mlstm_inner_dim), cfg.dtype)
        return {"mlstm": cell, "conv": conv}
    cell = ops.SLSTMState.zeros(batch_size, cfg.slstm_num_heads, cfg.slstm_head_dim)
    conv = jnp.zeros((batch_size, cfg.slstm_conv1d_kernel_size - 1, cfg.embedding_dim), cfg.dtype)
    return {"slstm": cell, "conv": conv}


class XLSTMBlock(nn.Module):
    """Pre-norm residual block: ``x + layer(LN(x))``, then ``x + FFN(LN(x))`` for sLSTM blocks.

    ``(x, rope, state, resets) -> (x, new_state or None)``.
    """

    config: XLSTMConfig
    block_idx: int
    return_state: bool = False

    @nn.compact
    def __call__(self, x, rope=None, state=None, resets=None):
        cfg = self.config
        is_slstm = cfg.block_types[self.block_idx] == "s"
        layer_cls = SLSTMLayer if is_slstm else MLSTMLayer
        layer = layer_cls(cfg, self.block_idx, self.return_state, name="xlstm")
        y, new_state = layer(LayerNorm(name="xlstm_norm")(x), rope, state, resets)
        x = x + y
        if is_slstm:
            x = x + GatedFeedForward(cfg, name="ffn")(LayerNorm(name="ffn_norm")(x))
        return x, new_state


class XLSTMBackbone(nn.Module):
    """Token embedding, blocks and post-blocks norm: tokens (B, S) -> hidden (B, S, D).

    With ``config.rcps`` the hidden is (B, S, 2D): ``[h, rc-branch]`` with the RC-equivariance
    ``hidden(rc(x)) == flip_{S,C}(hidden(x))`` (Caduceus' RCPS), built from weight-shared branches for
    every block type. Differences from DNA-xLSTM, on purpose: RCPS works for mLSTM blocks too, and the
    sLSTM head order is not reversed on the RC branch (the reference's ``is_rc_flipped`` breaks exact
    equivariance).
    """

    config: XLSTMConfig

    @nn.compact
    def __call__(self, tokens, positions=None, state=None, *, return_state: bool = False, resets=None):
        cfg = self.config
        if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
            raise ValueError(f"tokens must be int (B, S), got {tokens.dtype} {tokens.shape}")
        B, S = tokens.shape
        if (state is not None or return_state or resets is not None) and not cfg.causal:
            raise ValueError(
                "state passing, step decoding and resets need a causal model (bidirectional='none', rcps=False, "
                "causal convs)"
            )
        if state is not None and len(state) != cfg.num_blocks:
            raise ValueError(f"state must have one entry per block ({cfg.num_blocks}), got {len(state)}")
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(S, dtype=jnp.int32), (B, S))
        elif positions.shape != (B, S):
            raise ValueError(f"positions must be (B, S) = {(B, S)}, got {positions.shape}")
        if resets is not None:
            resets = jnp.asarray(resets, bool)
            if resets.shape != (B, S):
                raise ValueError(f"resets must be (B, S) = {(B, S)}, got {resets.shape}")

        dtype = jnp.dtype(cfg.dtype)
        embed = nn.Embed(cfg.vocab_size, cfg.embedding_dim, embedding_init=small_init(cfg.embedding_dim),
                         param_dtype=jnp.float32, name="token_embedding")
        x = embed(tokens).astype(dtype)
        if cfg.rcps:
            x = jnp.concatenate([x, _flip_lc(embed(reverse_complement(tokens, cfg.complement_map)).astype(dtype))], -1)

        rope = None
        if cfg.rope == "inner":
            rope = rope_angles(positions, cfg.mlstm_inner_dim, cfg.rope_base)
        elif cfg.rope == "head":
            rope = tuple(a[:, :, None, :] for a in rope_angles(positions, cfg.mlstm_head_dim, cfg.rope_base))

        if cfg.remat != "none" and not self.is_initializing():
            x, new_states = _remat_blocks(cfg, self.variables["params"], x, rope, state, resets, return_state)
        else:
            new_states = []
            for idx in range(cfg.num_blocks):
                block = XLSTMBlock(cfg, idx, return_state, name=f"block_{idx}")
                x, block_new = _directed(cfg, idx, block, x, rope, None if state is None else state[idx], resets)
                new_states.append(block_new)
        if cfg.add_post_blocks_norm:
            norm = LayerNorm(name="post_blocks_norm")
            x = _rc_wrap(norm, x) if cfg.rcps else norm(x)
        return (x, tuple(new_states)) if return_state else x


def _directed(cfg, idx, block, x, rope, block_state, resets, reverse=None):
    """Block ``idx`` in the model's direction mode (and RC wrapping): ``(x, new block state or None)``.
    ``block(h, rope, state, resets)``. ``reverse`` (a traced bool) replaces ``idx % 2 == 0`` of the
    alternating mode inside a scan."""

    def directed(h):
        # The time-reversed passes see the same position ids, as DNA-xLSTM's fixed RoPE table.
        if cfg.bidirectional == "sum":
            fwd, _ = block(h, rope, None, None)
            bwd, _ = block(jnp.flip(h, 1), rope, None, None)
            return fwd + jnp.flip(bwd, 1), None
        if cfg.bidirectional == "alternating":
            if reverse is None:
                if idx % 2:
                    return block(h, rope, None, None)[0], None
                return jnp.flip(block(jnp.flip(h, 1), rope, None, None)[0], 1), None
            flip = lambda t: jnp.where(reverse, jnp.flip(t, 1), t)  # noqa: E731
            return flip(block(flip(h), rope, None, None)[0]), None
        return block(h, rope, block_state, resets)

    if cfg.rcps:
        return _rc_wrap(lambda h: directed(h)[0], x), None
    return directed(x)


_REMAT_POLICIES = {
    "block": jax.checkpoint_policies.nothing_saveable,
    "block_save_dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def _segmentable(cfg: XLSTMConfig, kind: str) -> bool:
    """A pass of a block of this kind ("m" / "s") may run segment by segment, its state carried:
    causal convs and the chunkwise mLSTM (whose chunks a multiple-of-chunk segment keeps)."""
    if kind == "m":
        return cfg.backend == "chunkwise" and cfg.mlstm_conv_causal
    return cfg.slstm_conv_causal


def _segmented(apply, zero, L, policy, return_state):
    """One causal pass ``apply(h, rope, state, resets) -> (y, new_state)`` (state always returned) as
    a scan over segments of L tokens of a checkpointed ``apply``, the state carried from segment to
    segment (``zero`` when none comes in), a last shorter segment after the scan: the forward keeps
    each segment's input and entering state, the backward recomputes one segment at a time."""
    step = jax.checkpoint(lambda st, xs: apply(*xs[:2], st, xs[2])[::-1], policy=policy, prevent_cse=False)

    def run(h, rope, state, resets):
        B, S = h.shape[:2]
        n = S // L

        def segments(t):
            return jnp.moveaxis(t[:, :n * L].reshape(B, n, L, *t.shape[2:]), 1, 0)

        tail = lambda t: t[:, n * L:]  # noqa: E731
        state, ys = jax.lax.scan(step, zero if state is None else state,
                                 jax.tree.map(segments, (h, rope, resets)))
        y = jnp.moveaxis(ys, 0, 1).reshape(B, n * L, *ys.shape[3:])
        if n * L < S:
            state, y_tail = step(state, jax.tree.map(tail, (h, rope, resets)))
            y = jnp.concatenate([y, y_tail], axis=1)
        return y, state if return_state else None

    return run


def _remat_blocks(cfg, params, x, rope, state, resets, return_state):
    """The blocks as scans over each run of consecutive blocks of one type (see the module
    docstring): ``(x, per-block new states or Nones)``."""
    policy = _REMAT_POLICIES[cfg.remat]
    types = cfg.block_types
    B, S = x.shape[:2]
    new_states = []
    start = 0
    while start < cfg.num_blocks:
        end = start
        while end < cfg.num_blocks and types[end] == types[start]:
            end += 1
        run = range(start, end)
        segmented = 0 < cfg.remat_segment < S and _segmentable(cfg, types[start])
        # The block's parameters only (block_idx matters at initialisation alone).
        block = XLSTMBlock(cfg, start, return_state or segmented, parent=None)
        stack = lambda trees: jax.tree.map(lambda *a: jnp.stack(a), *trees)  # noqa: E731
        xs = {
            "params": stack([params[f"block_{i}"] for i in run]),
            "reverse": jnp.asarray([i % 2 == 0 for i in run]),
            "state": None if state is None else stack([state[i] for i in run]),
        }

        def body(h, xs, block=block, segmented=segmented, kind=types[start]):
            apply = lambda h, rope, st, rs: block.apply({"params": xs["params"]}, h, rope, st, rs)  # noqa: E731
            if segmented:
                apply = _segmented(apply, _block_zero_state(cfg, kind, B), cfg.remat_segment, policy, return_state)
            return _directed(cfg, None, apply, h, rope, xs["state"], resets, reverse=xs["reverse"])

        # Segmented blocks are checkpointed per segment; the others as a whole.
        x, run_states = jax.lax.scan(body if segmented else jax.checkpoint(body, policy=policy, prevent_cse=False),
                                     x, xs)
        for j in range(end - start):
            new_states.append(None if run_states is None else jax.tree.map(lambda a, j=j: a[j], run_states))
        start = end
    return x, new_states


def _rc_wrap(fn, x):
    """Apply ``fn`` to the forward half and (RC-flipped) to the RC half of x (B, S, 2D)."""
    D = x.shape[-1] // 2
    return jnp.concatenate([fn(x[..., :D]), _flip_lc(fn(_flip_lc(x[..., D:])))], axis=-1)


class XLSTMLM(nn.Module):
    """xLSTM language model: tokens (B, S) int -> logits (B, S, vocab) float32.

    Causal LM (``bidirectional="none"``) or masked LM (a bidirectional mode; the objective is in the
    data and the loss). ``__call__(tokens, positions=None, state=None, *, return_state=False,
    resets=None)``: positions default to ``arange(S)`` per row (pass them when continuing from a
    state with RoPE); returns logits, or ``(logits, state)`` if ``return_state``.
    ``step(token (B,), state, position (B,) or None) -> (logits (B, V), state)`` decodes one token in O(1).
    """

    config: XLSTMConfig

    def setup(self):
        cfg = self.config
        self.backbone = XLSTMBackbone(cfg)
        if not cfg.tie_weights:
            self.lm_head = nn.Dense(cfg.vocab_size, use_bias=False, kernel_init=small_init(cfg.embedding_dim),
                                    dtype=jnp.dtype(cfg.dtype), param_dtype=jnp.float32)

    def __call__(self, tokens, positions=None, state=None, *, return_state: bool = False, resets=None):
        out = self.backbone(tokens, positions, state, return_state=return_state, resets=resets)
        hidden, new_state = out if return_state else (out, None)
        logits = self.logits(hidden)
        return (logits, new_state) if return_state else logits

    def logits(self, hidden):
        """hidden (B, S, D) (or (B, S, 2D) with RCPS) -> logits (B, S, V) float32."""
        cfg = self.config
        if cfg.tie_weights:
            emb = self.backbone.variables["params"]["token_embedding"]["embedding"]
            return jnp.einsum("bsd,vd->bsv", hidden, emb.astype(hidden.dtype)).astype(jnp.float32)
        if not cfg.rcps:
            return self.lm_head(hidden).astype(jnp.float32)
        # RCPS head: one shared W; the RC half reads the complemented vocabulary rows.
        D = cfg.embedding_dim
        fwd = self.lm_head(hidden[..., :D])
        kernel = self.lm_head.variables["params"]["kernel"].astype(hidden.dtype)
        rc = jnp.flip(hidden[..., D:], -1) @ kernel[:, jnp.asarray(cfg.complement_map)]
        return (fwd + rc).astype(jnp.float32)

    def step(self, token, state, position=None):
        """One decoding step: token (B,) int, state from ``zero_state`` / a forward pass."""
        if self.config.rope != "none" and position is None:
            raise ValueError("step() of a RoPE model needs the position of the token")
        positions = None if position is None else jnp.asarray(position, jnp.int32)[:, None]
        logits, state = self(token[:, None], positions, state, return_state=True)
        return logits[:, 0], state


def prefill(model: XLSTMLM, params, tokens, positions=None, state=None, *, segment_length: int = 4096):
    """Run a prompt of any length through a causal ``XLSTMLM`` in segments; memory is bounded by one
    segment's activations and the recurrent state.

    Args:
      model, params: the language model and its params.
      tokens: (B, S) int prompt; positions: (B, S) int (default ``arange(S)``); state: to continue from.
      segment_length: tokens per forward pass (at most two shapes are compiled).
    Returns:
      (logits of the last prompt token (B, V) float32, state after the prompt).
    """
    B, S = tokens.shape
    if S == 0:
        raise ValueError("prefill needs at least one token")
    if segment_length < 1:
        raise ValueError(f"segment_length must be >= 1, got {segment_length}")
    if positions is None:
        positions = jnp.broadcast_to(jnp.arange(S, dtype=jnp.int32), (B, S))
    if state is None:
        state = zero_state(model.config, B)
    for start in range(0, S, segment_length):
        end = min(start + segment_length, S)
        logits, state = _forward_with_state(model, params, tokens[:, start:end], positions[:, start:end], state)
    return logits[:, -1], state


@functools.partial(jax.jit, static_argnums=0)
def _forward_with_state(model, params, tokens, positions, state):
    return model.apply({"params": params}, tokens, positions, state, return_state=True)


class XLSTMClassifier(nn.Module):
    """Sequence classifier over the headless backbone: tokens (B, S) -> class logits (B, num_classes).

    ``pooling``: ``"mean"`` over non-padding positions (DNA-xLSTM averages over left padding too; we
    exclude it on purpose), ``"first"`` or ``"last"`` non-padding position. ``padding_mask`` (B, S) is
    True at real tokens (default: all). With ``config.rcps`` the two strands are pooled separately
    and their logits averaged (PS). ``conjoin=True`` averages the logits of x and rc(x) (PH, for
    evaluation; needs ``config.complement_map``).
    """

    config: XLSTMConfig
    num_classes: int
    pooling: str = "mean"

    @nn.compact
    def __call__(self, tokens, padding_mask=None, *, conjoin: bool = False):
        cfg = self.config
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if padding_mask is None:
            padding_mask = jnp.ones(tokens.shape, bool)
        backbone = XLSTMBackbone(cfg, name="backbone")
        head = nn.Dense(self.num_classes, dtype=jnp.float32, name="head")

        def classify(toks, mask):
            h = backbone(toks)
            D = cfg.embedding_dim
            if cfg.rcps:
                strands = (h[..., :D], _flip_lc(h[..., D:]))
                return sum(head(_pool(s, mask, self.pooling)) for s in strands) / 2
            return head(_pool(h, mask, self.pooling))

        logits = classify(tokens, padding_mask)
        if conjoin:
            if cfg.complement_map is None:
                raise ValueError("conjoin=True needs config.complement_map")
            rc_logits = classify(reverse_complement(tokens, cfg.complement_map), jnp.flip(padding_mask, 1))
            logits = (logits + rc_logits) / 2
        return logits


def _pool(h, mask, pooling):
    """h (B, S, D), mask (B, S) bool -> (B, D) float32."""
    h = h.astype(jnp.float32)
    if pooling == "mean":
        w = mask.astype(jnp.float32)[..., None]
        return jnp.sum(h * w, axis=1) / jnp.maximum(jnp.sum(w, axis=1), 1.0)
    S = mask.shape[1]
    idx = jnp.arange(S)
    if pooling == "first":
        pos = jnp.min(jnp.where(mask, idx, S - 1), axis=1)
    else:
        pos = jnp.max(jnp.where(mask, idx, 0), axis=1)
    return jnp.take_along_axis(h, pos[:, None, None], axis=1)[:, 0]
