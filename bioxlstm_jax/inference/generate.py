"""Sampling from a causal ``XLSTMLM``: chunked prefill of the prompt, then O(1)-state decoding."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from bioxlstm_jax.nn import XLSTMLM, prefill

__all__ = ["sample_logits", "generate", "log_probs", "check_sampling"]


@functools.partial(jax.jit, static_argnums=0)
def log_probs(model: XLSTMLM, params, tokens: jax.Array) -> jax.Array:
    """Log-softmax of the LM's logits: tokens (B, L) int -> (B, L, V) float32 (one parallel forward,
    compiled once per model and shape)."""
    return jax.nn.log_softmax(model.apply({"params": params}, tokens).astype(jnp.float32), -1)


def sample_logits(rng: jax.Array, logits: jax.Array, temperature: float = 1.0, top_k: int = 0,
                  top_p: float = 1.0) -> jax.Array:
    """(B, V) logits -> (B,) sampled ids. ``top_k == 1`` is greedy; ``top_k > 1`` keeps the k largest
    logits; then logits / temperature; ``top_p < 1`` keeps the smallest set of tokens whose
    probability reaches ``top_p`` (nucleus). The reference's ``sample_safe`` order."""
    logits = logits.astype(jnp.float32)
    if top_k == 1 or temperature == 0:
        return jnp.argmax(logits, -1)
    if top_k > 0:
        kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    logits = logits / temperature
    if top_p < 1.0:
        order = jnp.argsort(logits, -1)  # ascending
        probs = jax.nn.softmax(jnp.take_along_axis(logits, order, -1), -1)
        drop_sorted = jnp.cumsum(probs, -1) <= 1.0 - top_p
        drop = jnp.zeros_like(drop_sorted).at[jnp.arange(logits.shape[0])[:, None], order].set(drop_sorted)
        logits = jnp.where(drop, -jnp.inf, logits)
    return jax.random.categorical(rng, logits, -1)


@functools.partial(jax.jit, static_argnames=("model", "max_new_tokens", "temperature", "top_k", "top_p"))
def _decode(model, params, state, logits, position, repeat, rng, token_positions, stop_token, *,
            max_new_tokens, temperature, top_k, top_p):
    B = logits.shape[0]

    def body(carry, k):
        state, logits, position, repeat, done = carry
        tok = sample_logits(jax.random.fold_in(rng, k), logits, temperature, top_k, top_p)
        tok = jnp.where(done, stop_token, tok)
        logp = jnp.take_along_axis(jax.nn.log_softmax(logits, -1), tok[:, None], -1)[:, 0]
        fixed = token_positions[jnp.arange(B), tok]
        pos = jnp.where(fixed >= 0, fixed, jnp.where(repeat, position, position + 1))
        new_logits, new_state = model.apply({"params": params}, tok, state, pos, method=XLSTMLM.step)
        out = (tok, jnp.where(done, 0.0, logp), ~done)
        done = done | (tok == stop_token)
        return (new_state, new_logits, pos, fixed >= 0, done), out

    init = (state, logits, position, repeat, jnp.zeros((B,), bool))
    _, (tokens, logps, live) = jax.lax.scan(body, init, jnp.arange(max_new_tokens))
    return tokens.T, logps.T, live.T


def check_sampling(temperature: float, top_k: int, top_p: float, prefix: str = "") -> None:
    """Raises ``ValueError`` for settings ``sample_logits`` cannot mean: temperature < 0, top_k < 0,
    top_p outside (0, 1] (``prefix`` goes before each name in the message, e.g. ``"--config."``)."""
    if not temperature >= 0:
        raise ValueError(f"{prefix}temperature={temperature}: expected >= 0 (0 = greedy)")
    if top_k < 0:
        raise ValueError(f"{prefix}top_k={top_k}: expected >= 0 (0 = off)")
    if not 0 < top_p <= 1:
        raise ValueError(f"{prefix}top_p={top_p}: expected a value in (0, 1] (1 = off)")


def generate(model: XLSTMLM, params, prompt, positions=None, *, max_new_tokens: int, rng: jax.Array,
             temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, stop_token: int | None = None,
             token_positions=None, segment_length: int = 4096, context_devices: int = 1) -> dict[str, np.ndarray]:
    """Continue ``prompt`` (B, S) int (positions (B, S), default ``arange``) by up to ``max_new_tokens``.

    The prompt is prefilled in segments of ``segment_length`` tokens, each split over ``context_devices`` devices
    (``nn.prefill``); each new token then costs one
    O(1) recurrent step. Sampling: see ``sample_logits``. A row stops after it samples
    ``stop_token`` (which is kept). Positions of new tokens: previous + 1, except that a token ``t``
    with ``token_positions[b, t] >= 0`` takes that position and the token after it repeats it (the
    Prot-xLSTM FIM rule: ``<mask-i>`` and the first residue of span i share a position); this also
    applies when the prompt ends with such a token.

    Returns numpy ``tokens`` (B, N) (``stop_token`` after a row stopped), ``logp`` (B, N) model
    log-probabilities at temperature 1 (0 after the stop), ``lengths`` (B,) new tokens including the
    stop token, and ``log_likelihood`` (B,) = the row sums of ``logp``.
    """
    check_sampling(temperature, top_k, top_p)
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens}: expected at least 1")
    prompt = jnp.asarray(prompt, jnp.int32)
    B, S = prompt.shape
    if positions is None:
        positions = jnp.broadcast_to(jnp.arange(S, dtype=jnp.int32), (B, S))
    positions = jnp.asarray(positions, jnp.int32)
    V = model.config.vocab_size
    tp = jnp.full((B, V), -1, jnp.int32) if token_positions is None else jnp.broadcast_to(
        jnp.asarray(token_positions, jnp.int32), (B, V))
    logits, state = prefill(model, params, prompt, positions, segment_length=segment_length, context_devices=context_devices)
    last_tok = prompt[:, -1]
    repeat = tp[jnp.arange(B), last_tok] >= 0
    stop = -1 if stop_token is None else int(stop_token)
    tokens, logp, live = _decode(model, params, state, logits, positions[:, -1], repeat, rng, tp,
                                 jnp.int32(stop), max_new_tokens=int(max_new_tokens),
                                 temperature=float(temperature), top_k=int(top_k), top_p=float(top_p))
    tokens, logp, live = np.asarray(tokens), np.asarray(logp), np.asarray(live)
    return {"tokens": tokens, "logp": logp, "lengths": live.sum(1), "log_likelihood": logp.sum(1)}
