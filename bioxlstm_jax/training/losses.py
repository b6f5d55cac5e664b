"""Losses as sums over a batch, so that means over devices and micro-batches are exact.

Each function returns a dict of float32 sums: ``loss`` (summed cross-entropy), ``weight`` (number of
counted targets), ``correct`` (argmax hits). ``summarize`` turns accumulated sums into
loss / perplexity / accuracy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["causal_lm_sums", "masked_lm_sums", "classification_sums", "summarize", "segment_resets"]


def _sums(logits, targets, weights):
    logits = logits.astype(jnp.float32)
    weights = weights.astype(jnp.float32)
    # logsumexp minus the target's logit, picked by a one-hot contraction rather than a gather: under a
    # context-split mesh the gather's gradient would all-gather every target id onto each device.
    shifted = logits - jax.lax.stop_gradient(jnp.max(logits, -1, keepdims=True))
    picked = jnp.sum(shifted * jax.nn.one_hot(targets, logits.shape[-1], dtype=shifted.dtype), -1)
    ce = jnp.log(jnp.sum(jnp.exp(shifted), -1)) - picked
    correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
    return {"loss": jnp.sum(ce * weights), "weight": jnp.sum(weights), "correct": jnp.sum(correct * weights)}


def segment_resets(segment_ids: jax.Array) -> jax.Array:
    """(B, L) segment ids -> (B, L) bool, True where a new packed document starts (mLSTM ``resets``)."""
    prev = jnp.pad(segment_ids[:, :-1], ((0, 0), (1, 0)), constant_values=-1)
    return (segment_ids != prev) & (jnp.arange(segment_ids.shape[1]) > 0)


def causal_lm_sums(logits: jax.Array, tokens: jax.Array, loss_mask: jax.Array | None = None,
                   segment_ids: jax.Array | None = None, subsets: dict[str, jax.Array] | None = None
                   ) -> dict[str, jax.Array]:
    """Next-token cross-entropy. logits (B, L, V) at position t predict tokens[t + 1].

    A target counts when ``loss_mask`` is set at its position (default: everywhere) and, in packed
    batches, when it is in the same non-padding segment (id > 0) as its context token.
    ``subsets`` ``{name: (B, L - 1) bool over the targets tokens[:, 1:]}`` add ``name/loss``,
    ``name/weight`` and ``name/correct`` for the real targets in each subset (metrics only; they
    ignore ``loss_mask``).
    """
    real = jnp.ones(tokens[:, 1:].shape, jnp.float32)
    if segment_ids is not None:
        real = real * ((segment_ids[:, 1:] == segment_ids[:, :-1]) & (segment_ids[:, 1:] > 0))
    weights = real if loss_mask is None else real * loss_mask[:, 1:]
    out = _sums(logits[:, :-1], tokens[:, 1:], weights)
    for name, mask in (subsets or {}).items():
        out.update({f"{name}/{k}": v for k, v in _sums(logits[:, :-1], tokens[:, 1:], real * mask).items()})
    return out


def masked_lm_sums(logits: jax.Array, targets: jax.Array, loss_mask: jax.Array) -> dict[str, jax.Array]:
    """Cross-entropy at masked positions only. logits (B, L, V), targets and loss_mask (B, L)."""
    return _sums(logits, targets, loss_mask)


def classification_sums(logits: jax.Array, labels: jax.Array, weight: jax.Array | None = None) -> dict[str, jax.Array]:
    """Cross-entropy of (B, C) logits against (B,) integer labels; ``weight`` (B,) 0/1 drops filler rows."""
    return _sums(logits, labels, jnp.ones(labels.shape, jnp.float32) if weight is None else weight)


def summarize(sums: dict) -> dict[str, float]:
    """Accumulated sums -> {loss, perplexity, accuracy} (means over counted targets), also for every
    subset ``name`` that has ``name/loss``, ``name/weight`` and ``name/correct`` sums."""
    out = {}
    for key in sums:
        if not key.endswith("loss") or key[:-4] + "weight" not in sums:
            continue
        p = key[:-4]
        w = max(float(sums[p + "weight"]), 1.0)
        loss = float(sums[p + "loss"]) / w
        out.update({p + "loss": loss, p + "perplexity": float(np.exp(min(loss, 80.0))),
                    p + "accuracy": float(sums[p + "correct"]) / w})
    return out
