"""Public entry of the chunkwise mLSTM Pallas kernels: padding, ``custom_vjp`` and the interpret switch.

Conventions are ``bioxlstm_jax.ops.mlstm`` 's (the numerical reference; this package never imports
it): ``q, k: (B, NH, S, DHQK)``, ``v: (B, NH, S, DHV)``, gate pre-activations ``i, f: (B, NH, S)``,
``log f = log_sigmoid(f)``, scale ``DHQK**-0.5`` on k, initial ``m = 0``, normalizer
``max(|n.q|, exp(-m)) + eps``; states ``(C, n, m)`` in float32.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ..checks import check_mlstm_inputs, check_mlstm_state, check_resets
from . import bwd, fwd
from .heuristics import BlockSizes, next_power_of_2, padded_head_dim

F32 = jnp.float32
BACKENDS = ("triton", "mosaic")


class _Triton:
    chunk_outputs, input_grads = staticmethod(fwd.chunk_outputs), staticmethod(bwd.input_grads)

    @staticmethod
    def chunk_states(*args, **kwargs):
        C, n = fwd.chunk_states(*args, **kwargs)
        return C, n, C[:, -1]

    @staticmethod
    def state_grads(*args, **kwargs):
        dC = bwd.state_grads(*args, **kwargs)
        return dC, dC[:, 0]


def _kernels(backend: str):
    """The four kernel entry points of a backend (same arguments): the Triton kernels or Mosaic GPU's.
    ``chunk_states`` returns (C, n, the last C in float32), ``state_grads`` (dC, the first dC in float32):
    C and dC, read by the other kernels, are float32 (Triton) or in the inputs' 16-bit dtype (Mosaic)."""
    if backend == "mosaic":
        from . import mosaic

        return mosaic
    return _Triton

def default_interpret() -> bool:
    """Interpret mode unless the default backend is a GPU (Pallas compiles only for GPU here)."""
    return jax.default_backend() != "gpu"


def _core_fwd_impl(q, k, v, i, log_f, resets, C0, n0, m0, *, chunk_size, scale, eps, blocks, interpret, backend):
    kernels = _kernels(backend)
    gates = fwd.chunk_gates(i, log_f, resets, m0, chunk_size)
    C, n, C_last = kernels.chunk_states(k, v, gates, C0, n0, chunk_size=chunk_size, scale=scale, blocks=blocks,
                                        interpret=interpret)
    h, N, m_comb = kernels.chunk_outputs(q, k, v, gates, C, n, chunk_size=chunk_size, scale=scale, eps=eps,
                                         blocks=blocks, interpret=interpret)
    return h, (C_last, n[:, -1], gates.m[:, -1]), (N, m_comb)


@functools.partial(jax.custom_vjp, nondiff_argnums=(9, 10, 11, 12, 13, 14))
def _core(q, k, v, i, log_f, resets, C0, n0, m0, chunk_size, scale, eps, blocks, interpret, backend):
    h, last, _ = _core_fwd_impl(q, k, v, i, log_f, resets, C0, n0, m0, chunk_size=chunk_size, scale=scale, eps=eps,
                                blocks=blocks, interpret=interpret, backend=backend)
    return h, last


def _core_fwd(q, k, v, i, log_f, resets, C0, n0, m0, chunk_size, scale, eps, blocks, interpret, backend):
    h, last, (N, m_comb) = _core_fwd_impl(q, k, v, i, log_f, resets, C0, n0, m0, chunk_size=chunk_size, scale=scale,
                                          eps=eps, blocks=blocks, interpret=interpret, backend=backend)
    # The chunk states are recomputed in the backward pass (as TFLA does by default): they would be
    # (NC + 1) * DHQK * DHV floats per head, more than q, k and v together.
    return (h, last), (q, k, v, i, log_f, resets, C0, n0, m0, N, m_comb)


def _core_bwd(chunk_size, scale, eps, blocks, interpret, backend, residuals, cotangents):
    q, k, v, i, log_f, resets, C0, n0, m0, N, m_comb = residuals
    dh, (dC_last, _dn_last, _dm_last) = cotangents
    kernels = _kernels(backend)
    kw = dict(chunk_size=chunk_size, blocks=blocks, interpret=interpret)
    gates = fwd.chunk_gates(i, log_f, resets, m0, chunk_size)
    C, _, C_last = kernels.chunk_states(k, v, gates, C0, n0, scale=scale, **kw)
    qbar_log = gates.query_init - m_comb
    inv_N = 1.0 / (N + eps)
    dh = dh.astype(q.dtype)
    dC, dC0 = kernels.state_grads(q, dh, qbar_log, inv_N, gates, dC_last.astype(F32), **kw)
    dq, dk, dv = kernels.input_grads(q, k, v, dh, gates, m_comb, qbar_log, inv_N, C, dC, scale=scale, **kw)

    # Gate gradients (spec section 1.4): every (query, key) pair and every path through the initial
    # and last states depends on the log f's between its two ends. Row sums are q.dq, column sums k.dk;
    # the reverse cumsum of their difference counts exactly the pairs that straddle a position, and the
    # paths into the last state straddle every position that follows their key: <dC_last, C_last>
    # completes them. Pairs across a document start are zero, so the identity holds with resets; the
    # log f at a document start itself is unused.
    qdq = jnp.sum(q.astype(F32) * dq, axis=-1)
    kdk = jnp.sum(k.astype(F32) * dk, axis=-1)
    into_last = jnp.sum(dC_last.astype(F32) * C_last, axis=(-2, -1))
    d_log_f = jnp.where(resets > 0, 0.0, fwd._reverse_cumsum(qdq - kdk) + into_last[:, None])
    # The outputs depend on the entering state through its true value exp(m0) * C0 (the normalizer
    # aside): at fixed C0, d/dm0 = <dC0, C0>. Code that builds the entering state from a stabilizer it
    # chooses (the context split's summaries) needs this term to see its choice of m cancel.
    dm0 = jnp.sum(dC0 * C0, axis=(-2, -1))
    return (dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype), kdk.astype(i.dtype),
            d_log_f.astype(log_f.dtype), jnp.zeros_like(resets), dC0, jnp.zeros_like(n0), dm0)


_core.defvjp(_core_fwd, _core_bwd)


def _check(q, k, v, i, f, backend):
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    dims = check_mlstm_inputs(q, k, v, i, f)
    dtypes = (jnp.bfloat16, jnp.float16) if backend == "mosaic" else (jnp.float32, jnp.bfloat16, jnp.float16)
    if q.dtype not in dtypes:
        names = [jnp.dtype(d).name for d in dtypes]
        raise TypeError(f"the {backend} mlstm_chunkwise kernels take {', '.join(names[:-1])} or {names[-1]} "
                        f"inputs, got {q.dtype}" + (" (wgmma has no IEEE float32 mode)" if backend == "mosaic" else ""))
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    return dims


def mlstm_chunkwise(q, k, v, i, f, *, chunk_size: int = 64, initial_state=None, return_last_state: bool = False,
                    resets=None, eps: float = 1e-6, backend: str = "triton", block_sizes: BlockSizes | None = None,
                    interpret: bool | None = None):
    """Chunkwise mLSTM with Pallas kernels, differentiable.

    Args:
      q, k: (B, NH, S, DHQK); v: (B, NH, S, DHV), one dtype: float32, bfloat16 or float16 (Triton);
        bfloat16 or float16 (Mosaic GPU); i, f: (B, NH, S) gate pre-activations (any float dtype; gate
        math is float32).
      chunk_size: a power of two >= 16 (Triton) or >= 64 (Mosaic GPU). Sequences shorter than a chunk
        use one chunk of ``max(16 or 64, next_power_of_2(S))``; otherwise S is padded to a multiple of
        the chunk with steps that leave the state unchanged (``log f = 0, i = -inf``), so the last
        state is exact.
      initial_state: ``(C (B,NH,DHQK,DHV), n (B,NH,DHQK), m (B,NH))`` (e.g. an ``MLSTMState``), or None.
      return_last_state: also return the state after the last token.
      resets: optional (B, S) bool, True where a packed document starts: nothing before it reaches it
        or anything after it (exactly, as the reference's log f = -inf; the kernels mask by document).
      eps: added to the normalizer.
      backend: ``"triton"`` (Pallas's Triton lowering: A100 and newer) or ``"mosaic"`` (Pallas's Mosaic
        GPU lowering, ``mosaic.py``: Hopper and newer, TMA and wgmma, 64 x 64 tiles).
      block_sizes: tiling of the Triton kernels; ``BlockSizes.for_shape`` when None (not used by Mosaic).
      interpret: run the kernels in the Pallas interpreter (Mosaic: GPU interpret mode with race
        detection, jax >= 0.12; compiled, Mosaic needs jax >= 0.11); None = interpret unless on GPU.
    Returns:
      h: (B, NH, S, DHV) in q's dtype; with ``return_last_state``, ``(h, (C, n, m))`` float32.

    Gradients: ``jax.custom_vjp`` whose backward treats the normalizer and the max-state as constants
    (TFLA's convention): exact for any loss of the per-head-normalized output, which is how the models
    use it. The gradient w.r.t. the initial ``n`` is zero, w.r.t. the initial ``m`` it is ``<dC0, C0>``
    (the outputs see the true state ``exp(m0) C0``), and cotangents of the last ``n`` and ``m`` are
    ignored, consistently with that convention (state passing between calls, and the context split's
    entering states, compose exactly). Dots are float32 at ``HIGHEST`` precision for float32 inputs; 16-bit inputs use the
    native matmul with float32 accumulation and float32 gates and states.
    """
    min_chunk = 64 if backend == "mosaic" else 16
    if not isinstance(chunk_size, int) or chunk_size < min_chunk or chunk_size & (chunk_size - 1):
        raise ValueError(f"chunk_size must be a power of two >= {min_chunk} for the {backend} kernels, "
                         f"got {chunk_size!r}")
    B, NH, S, DHQK, DHV = _check(q, k, v, i, f, backend)
    if interpret is None:
        interpret = default_interpret()
    L = chunk_size if S >= chunk_size else max(min_chunk, next_power_of_2(S))
    NC = -(-S // L)
    Sp = NC * L
    if backend == "mosaic":
        need = (0, 12) if interpret else (0, 11)
        if jax.__version_info__ < need:
            raise RuntimeError(f"the Mosaic GPU kernels need jax >= {need[0]}.{need[1]}"
                               + (" in interpret mode (its wgmma rule)" if interpret else "")
                               + f", this is jax {jax.__version__}")
        from .mosaic import MOSAIC_TILE

        DK, DV = (-(-d // MOSAIC_TILE) * MOSAIC_TILE for d in (DHQK, DHV))
        blocks = None
    else:
        DK, DV = padded_head_dim(DHQK), padded_head_dim(DHV)
        blocks = (block_sizes or BlockSizes.for_shape(L, DHQK, DHV, q.dtype)).clamped(L, DK, DV)
    BH = B * NH

    log_f = jax.nn.log_sigmoid(f.astype(F32))
    if resets is None:
        starts = jnp.zeros((BH, Sp), F32)
    else:
        resets = check_resets(resets, B, S)
        starts = jnp.broadcast_to(resets.astype(F32)[:, None, :], (B, NH, S))
        starts = jnp.pad(starts, ((0, 0), (0, 0), (0, Sp - S))).reshape(BH, Sp)
    gi = i.astype(F32)
    pad_s = ((0, 0), (0, 0), (0, Sp - S))
    log_f = jnp.pad(log_f, pad_s).reshape(BH, Sp)
    gi = jnp.pad(gi, pad_s, constant_values=-jnp.inf).reshape(BH, Sp)
    qp = jnp.pad(q, pad_s + ((0, DK - DHQK),)).reshape(BH, Sp, DK)
    kp = jnp.pad(k, pad_s + ((0, DK - DHQK),)).reshape(BH, Sp, DK)
    vp = jnp.pad(v, pad_s + ((0, DV - DHV),)).reshape(BH, Sp, DV)

    if initial_state is None:
        C0, n0, m0 = jnp.zeros((BH, DK, DV), F32), jnp.zeros((BH, DK), F32), jnp.zeros((BH,), F32)
    else:
        check_mlstm_state(initial_state, B, NH, DHQK, DHV)
        C0, n0, m0 = initial_state
        C0 = jnp.pad(C0.astype(F32), ((0, 0), (0, 0), (0, DK - DHQK), (0, DV - DHV))).reshape(BH, DK, DV)
        n0 = jnp.pad(n0.astype(F32), ((0, 0), (0, 0), (0, DK - DHQK))).reshape(BH, DK)
        m0 = m0.astype(F32).reshape(BH)

    h, (C, n, m) = _core(qp, kp, vp, gi, log_f, starts, C0, n0, m0, L, DHQK**-0.5, float(eps), blocks, bool(interpret),
                         backend)
    h = h.reshape(B, NH, Sp, DV)[:, :, :S, :DHV]
    if not return_last_state:
        return h
    last = (C.reshape(B, NH, DK, DV)[..., :DHQK, :DHV], n.reshape(B, NH, DK)[..., :DHQK], m.reshape(B, NH))
    return h, last
