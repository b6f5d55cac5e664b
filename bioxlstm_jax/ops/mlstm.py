"""mLSTM cell with stabilized exponential gating: parallel, chunkwise, recurrent and step forms.

Conventions (the equations: ``docs/ops.md``, "The math"):

* ``q, k: (B, NH, S, DHQK)``, ``v: (B, NH, S, DHV)``, gate pre-activations ``i, f: (B, NH, S)``.
* ``log f = log_sigmoid(f)``, ``log i = i`` (exponential input gate).
* The scale ``DHQK**-0.5`` is applied to ``k`` (xLSTM-2024 / Prot-xLSTM convention), so states are
  interchangeable with the official ``recurrent_step_stabilized_simple``. Initial ``m = 0``.
* ``h_t = C_t^T q_t / (max(|n_t^T q_t|, exp(-m_t)) + eps)``.
* Gates, decay matrices and states are computed in float32 (float64 if the inputs are float64); the
  output ``h`` has the dtype of ``q``. Dots run at ``Precision.HIGHEST``.
* Decay matrices are built from direct partial sums of ``log f`` (never ``F_t - F_s`` of global
  cumsums), which keeps float32 exact to ~1e-6 where the difference form loses ~1e-3.

All forms agree exactly with ``eps = 0``. With ``eps > 0`` they differ by O(eps * exp(m)) because each
form picks its own stabilizer ``m`` (the parallel form uses the row max, the others carry ``m``).
"""

from __future__ import annotations

import functools
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from pallas_kernels.checks import check_mlstm_inputs, check_mlstm_state, check_resets

__all__ = [
    "MLSTMState",
    "MLSTMSummary",
    "mlstm_summary",
    "apply_summary",
    "mlstm_parallel",
    "mlstm_recurrent",
    "mlstm_step",
    "mlstm_chunkwise",
    "CHUNKWISE_KERNELS",
]

_HIGHEST = lax.Precision.HIGHEST
_einsum = functools.partial(jnp.einsum, precision=_HIGHEST)

CHUNKWISE_KERNELS = ("auto", "pallas_mosaic", "pallas_triton", "xla")


class MLSTMState(NamedTuple):
    """mLSTM memory in stabilized units (float32).

    C: (B, NH, DHQK, DHV) matrix memory, sum of ``exp(.) * (k/sqrt(DHQK)) v^T``.
    n: (B, NH, DHQK) normalizer state.
    m: (B, NH) log-space stabilizer; the true state is ``exp(m) * (C, n)``.
    """

    C: jax.Array
    n: jax.Array
    m: jax.Array

    @classmethod
    def zeros(cls, batch: int, num_heads: int, dhqk: int, dhv: int, dtype=jnp.float32) -> "MLSTMState":
        """The initial state: ``C = 0, n = 0, m = 0``."""
        return cls(
            jnp.zeros((batch, num_heads, dhqk, dhv), dtype),
            jnp.zeros((batch, num_heads, dhqk), dtype),
            jnp.zeros((batch, num_heads), dtype),
        )


NULL_M = -1e30  # the stabilizer of the null state: below any real m, finite so that null - null = 0


class MLSTMSummary(NamedTuple):
    """What a stretch of tokens does to any entering state (context parallelism), float32.

    The mLSTM update is affine in the state: after the stretch the true state is
    ``exp(g) * entering + exp(m) * (C, n)``.
    g: (B, NH) total log forget decay of the stretch (``-inf`` across a reset).
    C: (B, NH, DHQK, DHV), n: (B, NH, DHQK), m: (B, NH): the state the stretch reaches from the null
      state (``C = n = 0``, ``m = NULL_M``), i.e. its own contribution in stabilized units.
    """

    g: jax.Array
    C: jax.Array
    n: jax.Array
    m: jax.Array

    @classmethod
    def null(cls, batch: int, num_heads: int, dhqk: int, dhv: int, dtype=jnp.float32) -> "MLSTMSummary":
        """The summary of no tokens (``apply_summary`` leaves any state unchanged)."""
        zeros = MLSTMState.zeros(batch, num_heads, dhqk, dhv, dtype)
        return cls(zeros.m, zeros.C, zeros.n, jnp.full((batch, num_heads), NULL_M, dtype))


def apply_summary(state: MLSTMState, summary: MLSTMSummary) -> MLSTMState:
    """The state after a stretch of tokens, from the state entering it and the stretch's summary: the
    same stabilized update as one chunk of ``mlstm_chunkwise`` (``m = max(g + m_in, m_summary)``)."""
    return _combine(state, (summary.g, summary.m, summary.C, summary.n))


def mlstm_summary(k, v, i, f, *, resets=None, entering: MLSTMSummary | None = None) -> MLSTMSummary:
    """The ``MLSTMSummary`` of tokens k (B, NH, S, DHQK) (unscaled, as ``mlstm_chunkwise`` takes it),
    v (B, NH, S, DHV), gate pre-activations i, f (B, NH, S) and ``resets`` (B, S) bool, after the
    stretch summarized by ``entering`` (None: none). One pass, memory linear in S, no (S, S) matrix.
    Summaries compose: ``apply_summary(apply_summary(x, a), b) == apply_summary(x, mlstm_summary(b's
    tokens, entering=a))``, which is how the shards of a split sequence find their entering states."""
    B, NH, S, DHQK, DHV = check_mlstm_inputs(k, k, v, i, f)
    ct = _compute_dtype(k.dtype)
    log_f = jax.nn.log_sigmoid(f.astype(ct))
    if resets is not None:
        log_f = jnp.where(jnp.asarray(resets, bool)[:, None, :], -jnp.inf, log_f)
    g, m_local, kv, ksum = _chunk_summary(k.astype(ct) * DHQK**-0.5, v.astype(ct), log_f, i.astype(ct))
    if entering is None:
        return MLSTMSummary(g, kv, ksum, m_local)
    C, n, m = _combine(MLSTMState(entering.C, entering.n, entering.m), (g, m_local, kv, ksum))
    return MLSTMSummary(entering.g + g, C, n, m)


def _compute_dtype(dtype) -> jnp.dtype:
    """float32 for 16/32-bit inputs, float64 for float64 inputs."""
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"mLSTM inputs must be floating point, got {dtype}")
    return jnp.promote_types(dtype, jnp.float32)


def _log_decay_matrix(log_f: jax.Array, causal: bool) -> jax.Array:
    """Direct partial sums of log f: (..., S) -> (..., S, S).

    Entry ``[t, s]`` is ``sum_{j=s+1..t} log f_j`` for ``s <= t`` (0 on the diagonal). For ``s > t`` it is
    ``-inf`` if ``causal``, else the mirror image ``sum_{j=t..s-1} log f_j`` (DNA-xLSTM's native
    bidirectional mask).
    """
    S = log_f.shape[-1]
    t = jnp.arange(S)[:, None]
    s = jnp.arange(S)[None, :]
    lower = jnp.cumsum(jnp.where(t > s, log_f[..., :, None], 0.0), axis=-2)
    if causal:
        return jnp.where(t >= s, lower, -jnp.inf)
    # upper[t, s] = sum over r in [t, s-1] of log f_r, accumulated along s.
    upper = jnp.cumsum(jnp.where(s > t, jnp.roll(log_f, 1, axis=-1)[..., None, :], 0.0), axis=-1)
    return jnp.where(t >= s, lower, upper)


@functools.partial(jax.jit, static_argnames=("causal",))
def mlstm_parallel(q, k, v, i, f, *, eps: float = 1e-6, causal: bool = True) -> jax.Array:
    """Quadratic (attention-like) mLSTM. Memory O(S^2); use ``mlstm_chunkwise`` for long sequences.

    Args:
      q, k: (B, NH, S, DHQK); v: (B, NH, S, DHV); i, f: (B, NH, S) gate pre-activations.
      eps: added to the normalizer.
      causal: ``False`` gives DNA-xLSTM's native bidirectional mLSTM: above the diagonal the decay is
        ``sum_{r=t..s-1} log f_r`` (the mirror image), as ``parallel_stabilized_simple(bidirectional=True)``
        in ml-jku/DNA-xLSTM computes it (there from differences of reversed cumsums).
    Returns:
      h: (B, NH, S, DHV) in the dtype of ``q``.
    """
    _, _, _, DHQK, _ = check_mlstm_inputs(q, k, v, i, f)
    out_dtype, ct = q.dtype, _compute_dtype(q.dtype)
    q, k, v = (x.astype(ct) for x in (q, k, v))
    log_f = jax.nn.log_sigmoid(f.astype(ct))
    log_d = _log_decay_matrix(log_f, causal) + i.astype(ct)[..., None, :]  # (B, NH, S, S)
    m = jnp.max(log_d, axis=-1, keepdims=True)
    scores = _einsum("bhtd,bhsd->bhts", q, k * DHQK**-0.5) * jnp.exp(log_d - m)
    normalizer = jnp.maximum(jnp.abs(jnp.sum(scores, axis=-1, keepdims=True)), jnp.exp(-m)) + eps
    return _einsum("bhts,bhsd->bhtd", scores / normalizer, v).astype(out_dtype)


@jax.jit
def mlstm_step(q, k, v, i, f, state: MLSTMState | None = None, *, eps: float = 1e-6):
    """One recurrent step.

    Args:
      q, k: (B, NH, DHQK); v: (B, NH, DHV); i, f: (B, NH); state: ``MLSTMState`` (zeros if None).
    Returns:
      (h: (B, NH, DHV) in the dtype of ``q``, new ``MLSTMState``).
    """
    if q.ndim != 3 or k.shape != q.shape or v.ndim != 3 or v.shape[:2] != q.shape[:2]:
        raise ValueError(f"mlstm_step expects q, k (B, NH, DHQK) and v (B, NH, DHV), got {q.shape}, {k.shape}, {v.shape}")
    if i.shape != q.shape[:2] or f.shape != q.shape[:2]:
        raise ValueError(f"mlstm_step expects gates i, f of shape (B, NH) = {q.shape[:2]}, got {i.shape}, {f.shape}")
    B, NH, DHQK = q.shape
    DHV = v.shape[-1]
    ct = _compute_dtype(q.dtype)
    if state is None:
        state = MLSTMState.zeros(B, NH, DHQK, DHV, ct)
    check_mlstm_state(state, B, NH, DHQK, DHV, "MLSTMState")
    C, n, m = (x.astype(ct) for x in state)
    qc, kc, vc = (x.astype(ct) for x in (q, k, v))
    i, log_f = i.astype(ct), jax.nn.log_sigmoid(f.astype(ct))

    m_new = jnp.maximum(log_f + m, i)
    f_act = jnp.exp(log_f + m - m_new)
    i_act = jnp.exp(i - m_new)
    kc = kc * DHQK**-0.5
    C = f_act[..., None, None] * C + i_act[..., None, None] * (kc[..., :, None] * vc[..., None, :])
    n = f_act[..., None] * n + i_act[..., None] * kc
    num = _einsum("bhd,bhde->bhe", qc, C)
    den = jnp.maximum(jnp.abs(_einsum("bhd,bhd->bh", qc, n)), jnp.exp(-m_new)) + eps
    h = num / den[..., None]
    return h.astype(q.dtype), MLSTMState(C, n, m_new)


@jax.jit
def mlstm_recurrent(q, k, v, i, f, *, initial_state: MLSTMState | None = None, eps: float = 1e-6):
    """Sequential mLSTM (``lax.scan`` over ``mlstm_step``). Memory O(S), time O(S) sequential steps.

    Args:
      q, k: (B, NH, S, DHQK); v: (B, NH, S, DHV); i, f: (B, NH, S); initial_state: ``MLSTMState`` or None.
    Returns:
      (h: (B, NH, S, DHV) in the dtype of ``q``, last ``MLSTMState``).
    """
    B, NH, S, DHQK, DHV = check_mlstm_inputs(q, k, v, i, f)
    if initial_state is None:
        initial_state = MLSTMState.zeros(B, NH, DHQK, DHV, _compute_dtype(q.dtype))

    def body(state, xs):
        h, state = mlstm_step(*xs, state, eps=eps)
        return state, h

    time_major = tuple(jnp.moveaxis(x, 2, 0) for x in (q, k, v, i, f))
    last, h = lax.scan(body, initial_state, time_major)
    return jnp.moveaxis(h, 0, 2), last


def _reverse_cumsum(x: jax.Array, axis: int = -1) -> jax.Array:
    return jnp.flip(jnp.cumsum(jnp.flip(x, axis), axis=axis), axis)


def _chunk_gates(log_f: jax.Array, i: jax.Array):
    """Gates of one chunk (..., L): b = within-chunk cumsum of log f, g = the chunk's total log decay,
    a_tau = sum_{j > tau} log f_j + i_tau (a reverse cumsum, never g - b)."""
    b = jnp.cumsum(log_f, axis=-1)
    log_f_after = jnp.concatenate([log_f[..., 1:], jnp.zeros_like(log_f[..., :1])], axis=-1)
    return b, b[..., -1], _reverse_cumsum(log_f_after) + i


def _chunk_summary(k, v, log_f, i):
    """What a chunk adds to the state, stabilized by its own max: (g, m_local, kv, ksum) with shapes
    (...), (...), (..., DHQK, DHV), (..., DHQK) from k (..., L, DHQK) (scaled), v (..., L, DHV)."""
    _, g, a = _chunk_gates(log_f, i)
    m_local = jnp.max(a, axis=-1)
    kw = k * jnp.exp(a - m_local[..., None])[..., None]
    return g, m_local, _einsum("...ld,...le->...de", kw, v), jnp.sum(kw, axis=-2)


def _combine(state: MLSTMState, summary) -> MLSTMState:
    """The state after a chunk: the entering state decayed by the chunk's total decay, plus its summary."""
    C, n, m = state
    g, m_local, kv, ksum = summary
    m_new = jnp.maximum(g + m, m_local)
    decay = jnp.exp(g + m - m_new)
    weight = jnp.exp(m_local - m_new)
    return MLSTMState(decay[..., None, None] * C + weight[..., None, None] * kv,
                      decay[..., None] * n + weight[..., None] * ksum, m_new)


def _chunk_output(q, k, v, log_f, i, state: MLSTMState, eps):
    """h (..., L, DHV) of a chunk from its inputs and the state entering it: the intra-chunk quadratic
    part (decay from direct partial sums within the chunk) plus the entering state's part."""
    C_in, n_in, m_in = state
    b, _, _ = _chunk_gates(log_f, i)
    log_d = _log_decay_matrix(log_f, causal=True) + i[..., None, :]  # (..., L, L)
    m_comb = jnp.maximum(b + m_in[..., None], jnp.max(log_d, axis=-1))  # (..., L)
    scores = _einsum("...ld,...sd->...ls", q, k) * jnp.exp(log_d - m_comb[..., None])
    q_inter = q * jnp.exp(b + m_in[..., None] - m_comb)[..., None]
    num = _einsum("...ls,...se->...le", scores, v) + _einsum("...ld,...de->...le", q_inter, C_in)
    den = jnp.sum(scores, axis=-1) + _einsum("...ld,...d->...l", q_inter, n_in)
    return num / (jnp.maximum(jnp.abs(den), jnp.exp(-m_comb)) + eps)[..., None]


def _chunk(q, k, v, log_f, i, state, eps):
    """One chunk: (h, state after it). The backward pass differentiates exactly this function."""
    return _chunk_output(q, k, v, log_f, i, state, eps), _combine(state, _chunk_summary(k, v, log_f, i))


def _chunk_slices(q, k, v, log_f, i, c, L):
    """Chunk c of time-major q, k, v (B, S, NH, D) and gates (B, NH, S): (B, L, NH, D), (B, NH, L)."""
    return tuple(lax.dynamic_slice_in_dim(x, c * L, L, axis=2 if x.ndim == 3 else 1) for x in (q, k, v, log_f, i))


def _chunk_time_major(q, k, v, log_f, i, state, eps):
    """``_chunk`` of time-major slices (B, L, NH, D), k unscaled: (h (B, L, NH, DHV), state after)."""
    qc, kc, vc = (jnp.swapaxes(x, 1, 2) for x in (q, k, v))
    h, new_state = _chunk(qc, kc * q.shape[-1] ** -0.5, vc, log_f, i, state, eps)
    return jnp.swapaxes(h, 1, 2), new_state


def _chunkwise_forward(q, k, v, log_f, i, initial_state, eps, L):
    """Time-major inputs q, k (B, S, NH, DHQK), v (B, S, NH, DHV), gates (B, NH, S), S a multiple of L:
    (h (B, S, NH, DHV), last state, the states entering each chunk (NC leading)). A scan over chunks
    of ``_chunk``: one chunk's (L, L) matrices at a time, and no copy of the inputs."""
    NC = q.shape[1] // L

    def step(carry, c):
        state, h = carry
        h_c, new_state = _chunk_time_major(*_chunk_slices(q, k, v, log_f, i, c, L), state, eps)
        h = lax.dynamic_update_slice_in_dim(h, h_c, c * L, axis=1)
        return (new_state, h), state

    h0 = jnp.zeros(v.shape, q.dtype)
    (last, h), entering = lax.scan(step, (initial_state, h0), jnp.arange(NC))
    return h, last, entering


@functools.partial(jax.custom_vjp, nondiff_argnums=(6, 7))
def _chunkwise_core(q, k, v, log_f, i, initial_state, eps, L):
    h, last, _ = _chunkwise_forward(q, k, v, log_f, i, initial_state, eps, L)
    return h, last


def _chunkwise_core_fwd(q, k, v, log_f, i, initial_state, eps, L):
    h, last, entering = _chunkwise_forward(q, k, v, log_f, i, initial_state, eps, L)
    return (h, last), (q, k, v, log_f, i, entering)


def _chunkwise_core_bwd(eps, L, residuals, cotangents):
    """Reverse scan over chunks: recompute one chunk from its inputs and entering state, pull the
    output and state cotangents back through it (``jax.vjp`` of ``_chunk``), carry the entering
    state's cotangent to the previous chunk. Exact: the gradient of the forward above, normalizer and
    stabilizer included, with one chunk's temporaries at a time."""
    q, k, v, log_f, i, entering = residuals
    dh, dlast = cotangents
    NC = q.shape[1] // L

    def step(carry, xs):
        dstate, *d_bufs = carry
        c, state = xs
        _, pullback = jax.vjp(lambda *a: _chunk_time_major(*a, eps), *_chunk_slices(q, k, v, log_f, i, c, L), state)
        *d_chunk, d_state = pullback((lax.dynamic_slice_in_dim(dh, c * L, L, axis=1), dstate))
        d_bufs = [lax.dynamic_update_slice_in_dim(buf, d, c * L, axis=2 if buf.ndim == 3 else 1)
                  for buf, d in zip(d_bufs, d_chunk)]
        return (d_state, *d_bufs), None

    zeros = tuple(jnp.zeros_like(x) for x in (q, k, v, log_f, i))
    (d_initial, *d_inputs), _ = lax.scan(step, (dlast, *zeros), (jnp.arange(NC), entering), reverse=True)
    return (*d_inputs, d_initial)


_chunkwise_core.defvjp(_chunkwise_core_fwd, _chunkwise_core_bwd)


@functools.partial(jax.jit, static_argnames=("chunk_size", "eps", "recompute"))
def _mlstm_chunkwise_xla(q, k, v, i, f, resets, initial_state, *, chunk_size, eps, recompute=True):
    """The XLA chunkwise form. ``recompute=True``: the custom VJP above (saves inputs and entering
    states only); ``False``: plain autodiff of the same forward (the reference the tests compare to)."""
    B, NH, S, DHQK, DHV = check_mlstm_inputs(q, k, v, i, f)
    ct = _compute_dtype(q.dtype)
    L = min(chunk_size, S)
    NC = -(-S // L)
    pad = NC * L - S

    log_f = jax.nn.log_sigmoid(f.astype(ct))
    if resets is not None:
        # A new document starts here: nothing before it may leak in (exactly, thanks to partial sums).
        log_f = jnp.where(resets[:, None, :], -jnp.inf, log_f)
    i = i.astype(ct)
    # Time-major (B, S, NH, D): the layout of the projections that produce q, k, v (the transposes cancel).
    q, k, v = (jnp.swapaxes(x.astype(ct), 1, 2) for x in (q, k, v))
    if pad:
        # Padded steps leave the state unchanged: log f = 0 (keep everything), i = -inf (add nothing).
        log_f = jnp.pad(log_f, ((0, 0), (0, 0), (0, pad)))
        i = jnp.pad(i, ((0, 0), (0, 0), (0, pad)), constant_values=-jnp.inf)
        q, k, v = (jnp.pad(x, ((0, 0), (0, pad), (0, 0), (0, 0))) for x in (q, k, v))

    if initial_state is None:
        initial_state = MLSTMState.zeros(B, NH, DHQK, DHV, ct)
    check_mlstm_state(initial_state, B, NH, DHQK, DHV, "MLSTMState")
    initial_state = MLSTMState(*(x.astype(ct) for x in initial_state))
    if recompute:
        h, last_state = _chunkwise_core(q, k, v, log_f, i, initial_state, eps, L)
    else:
        h, last_state, _ = _chunkwise_forward(q, k, v, log_f, i, initial_state, eps, L)
    return jnp.swapaxes(h[:, :S], 1, 2), MLSTMState(*last_state)


# Where kernel="auto" takes the Pallas kernels (docs/kernels.md, "Which path runs"). Triton: the GPUs
# (compute capabilities) and calls for which every kernel, forward and backward, compiles with no more
# than a few hundred bytes spilled (benchmarks/gpu_compile.py, CI's gpu_compile tier): A100 (8.0) and
# H100 / H200 (9.0), float32 / bfloat16 / float16 inputs, head dims up to 512, chunks of 16 to 1024
# tokens (powers of two).
TRITON_GPUS = {"8.0": "A100", "9.0": "H100 / H200"}
KERNEL_MAX_HEAD_DIM = 512
KERNEL_MAX_CHUNK = 1024
# Mosaic GPU: the GPUs on which its kernels are proven to compile and run. None yet: they are checked in
# GPU interpret mode on CPU (tests/pallas_kernels), but XLA cannot compile Mosaic GPU kernels without a
# GPU and no GPU has run them (docs/kernels.md, "Mosaic GPU"), so ``auto`` does not take them.
MOSAIC_GPUS: dict[str, str] = {}
MOSAIC_MIN_CHUNK = 64


def _gpu_capability() -> str | None:
    """The default device's CUDA compute capability ("9.0"), or None off an NVIDIA GPU."""
    device = jax.devices()[0]
    return getattr(device, "compute_capability", None) if device.platform == "gpu" else None


def _triton_refusal(capability: str | None, dtype, dhqk: int, dhv: int, chunk_size: int) -> str | None:
    """Why ``kernel="auto"`` does not take the Triton kernels for this GPU and call, or None."""
    if capability is None:
        return "not on an NVIDIA GPU"
    if capability not in TRITON_GPUS:
        return (f"compute capability {capability}: the kernels are compiled and checked for "
                f"{', '.join(f'{c} ({n})' for c, n in TRITON_GPUS.items())} only")
    if jnp.dtype(dtype) not in (jnp.float32, jnp.bfloat16, jnp.float16):
        return f"{jnp.dtype(dtype)} inputs (the kernels take float32, bfloat16, float16)"
    if max(dhqk, dhv) > KERNEL_MAX_HEAD_DIM:
        return f"head dims {dhqk} / {dhv} (the kernels are checked up to {KERNEL_MAX_HEAD_DIM})"
    if chunk_size & (chunk_size - 1) or not 16 <= chunk_size <= KERNEL_MAX_CHUNK:
        return f"chunk_size {chunk_size} (the kernels take powers of two from 16 to {KERNEL_MAX_CHUNK})"
    return None


def _mosaic_refusal(capability: str | None, dtype, dhqk: int, dhv: int, chunk_size: int) -> str | None:
    """Why ``kernel="auto"`` does not take the Mosaic GPU kernels for this GPU and call, or None."""
    if capability not in MOSAIC_GPUS:
        return f"compute capability {capability}: no GPU is proven for the Mosaic GPU kernels"
    if jnp.dtype(dtype) not in (jnp.bfloat16, jnp.float16):
        return f"{jnp.dtype(dtype)} inputs (the Mosaic GPU kernels take bfloat16, float16)"
    if max(dhqk, dhv) > KERNEL_MAX_HEAD_DIM:
        return f"head dims {dhqk} / {dhv} (the kernels are checked up to {KERNEL_MAX_HEAD_DIM})"
    if chunk_size & (chunk_size - 1) or not MOSAIC_MIN_CHUNK <= chunk_size <= KERNEL_MAX_CHUNK:
        return f"chunk_size {chunk_size} (the Mosaic GPU kernels take powers of two from 64 to {KERNEL_MAX_CHUNK})"
    return None


_FALLBACK_WARNED: set[str] = set()


def chunkwise_path(kernel: str, dtype, dhqk: int, dhv: int, chunk_size: int) -> tuple[str, str | None]:
    """What ``mlstm_chunkwise(kernel=...)`` runs for such a call on the default device:
    ``("pallas_mosaic" | "pallas_triton", None)``, or ``("xla", why)`` (``why`` None when
    ``kernel="xla"`` asked for it). ``auto`` prefers Mosaic GPU, then Triton, then XLA."""
    if kernel == "auto":
        capability = _gpu_capability()
        if _mosaic_refusal(capability, dtype, dhqk, dhv, chunk_size) is None:
            return "pallas_mosaic", None
        refusal = _triton_refusal(capability, dtype, dhqk, dhv, chunk_size)
        return ("xla", refusal) if refusal else ("pallas_triton", None)
    return kernel, None


def mlstm_chunkwise(
    q,
    k,
    v,
    i,
    f,
    *,
    chunk_size: int = 64,
    initial_state: MLSTMState | None = None,
    return_last_state: bool = False,
    resets: jax.Array | None = None,
    eps: float = 1e-6,
    kernel: str = "auto",
):
    """Chunkwise mLSTM: exact, memory linear in S, any S.

    Sequential over chunks (``lax.scan`` of the inter-chunk state recurrence), parallel within chunks.
    If S is not a multiple of ``chunk_size`` the tail is padded with ``log f = 0, i = -inf`` steps that
    leave the state unchanged, so the last state is exact.

    Args:
      q, k: (B, NH, S, DHQK); v: (B, NH, S, DHV); i, f: (B, NH, S) gate pre-activations.
      chunk_size: tokens per chunk (``min(chunk_size, S)`` is used).
      initial_state: ``MLSTMState`` entering the sequence (zeros if None).
      return_last_state: also return the ``MLSTMState`` after the last token.
      resets: optional (B, S) bool, True where a new document starts (packed batches). Outputs from
        there on equal a fresh run on that document (exactly for ``eps = 0``; states may differ in
        their stabilizer ``m`` but represent the same memory).
      eps: added to the normalizer.
      kernel: ``"xla"`` (this implementation, the numerical reference); ``"pallas_triton"`` or
        ``"pallas_mosaic"`` (the kernels of ``pallas_kernels.mlstm_chunkwise`` on Pallas's Triton or
        Mosaic GPU backend; interpreted off GPU; errors propagate); or ``"auto"``: the kernels on the
        GPUs and for the calls they are proven for (docs/kernels.md: Triton on A100, H100 / H200, head
        dims up to 512, chunks of 16 to 1024; Mosaic GPU on none yet), else XLA (off GPU silently, on
        another GPU or call with one warning per reason). The kernels' gradient treats the normalizer and max-state as constants (exact
        behind the per-head norm that always follows).
    Returns:
      h: (B, NH, S, DHV) in the dtype of ``q``, or ``(h, MLSTMState)`` if ``return_last_state``.
    """
    if kernel not in CHUNKWISE_KERNELS:
        raise ValueError(f"kernel must be one of {CHUNKWISE_KERNELS}, got {kernel!r}")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    B, NH, S, DHQK, DHV = check_mlstm_inputs(q, k, v, i, f)
    if resets is not None:
        resets = check_resets(resets, B, S).astype(bool)
    if initial_state is not None:
        check_mlstm_state(initial_state, B, NH, DHQK, DHV, "MLSTMState")
    path, refusal = chunkwise_path(kernel, q.dtype, DHQK, DHV, chunk_size)
    use_kernel = path.startswith("pallas")
    if refusal is not None and _gpu_capability() is not None and refusal not in _FALLBACK_WARNED:
        _FALLBACK_WARNED.add(refusal)
        warnings.warn(f"mlstm_chunkwise: the Pallas kernels are not used for {refusal}; using the XLA "
                      "chunkwise form.", RuntimeWarning, stacklevel=2)
    if use_kernel:
        from pallas_kernels import mlstm_chunkwise as kernel

        h, last = kernel(q, k, v, i, f, chunk_size=chunk_size, initial_state=initial_state,
                         return_last_state=True, resets=resets, eps=eps, backend=path.removeprefix("pallas_"))
        last_state = MLSTMState(*last)
    else:
        h, last_state = _mlstm_chunkwise_xla(
            q, k, v, i, f, resets, initial_state, chunk_size=chunk_size, eps=float(eps)
        )
    h = h.astype(q.dtype)
    return (h, last_state) if return_last_state else h
