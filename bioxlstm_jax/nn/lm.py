"""The heads over ``XLSTMBackbone``: the language model ``XLSTMLM`` (causal or masked) and the sequence
classifier ``XLSTMClassifier``.

Parameter tree of ``XLSTMLM``::

    backbone/token_embedding/embedding (V, D)
    backbone/block_{i}/xlstm_norm/weight, backbone/block_{i}/xlstm/...   (MLSTMLayer or SLSTMLayer)
    backbone/block_{i}/ffn_norm/weight, backbone/block_{i}/ffn/...       (sLSTM blocks only)
    backbone/post_blocks_norm/weight
    lm_head/kernel (D, V)                                                (absent if tie_weights)
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from bioxlstm_jax.nn.backbone import XLSTMBackbone, _flip_lc, reverse_complement
from bioxlstm_jax.nn.config import XLSTMConfig
from bioxlstm_jax.nn.layers import small_init

__all__ = ["XLSTMLM", "XLSTMClassifier", "POOLINGS"]

POOLINGS = ("mean", "first", "last")


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
