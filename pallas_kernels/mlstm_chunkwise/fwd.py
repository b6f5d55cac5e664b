"""Forward kernels of the chunkwise mLSTM (TFLA's two levels) and the gate preprocessing they share.

All arrays here are already flattened and padded by ``api.py``: ``q, k: (BH, S, DK)``,
``v: (BH, S, DV)`` with ``S = NC * L`` and power-of-two head dims; per-token gate quantities are
``(BH, S)`` float32, per-chunk ones ``(BH, NC)``; states are ``(BH, NC + 1, DK, DV)`` float32, where
index ``c`` is the state entering chunk ``c`` and ``NC`` the last state.

Math (``docs/ops.md``, "The math": the chunkwise form; scale ``s`` applied to k):
within a chunk ``b = cumsum(log f)``, ``g = b[L-1]``, ``a_t = sum_{j>t} log f_j + i_t`` (a reverse
cumsum, never ``g - b``); states ``m_{c+1} = max(g_c + m_c, max_t a_t)``,
``C_{c+1} = exp(g_c + m_c - m_{c+1}) C_c + sum_t s exp(a_t - m_{c+1}) k_t v_t^T`` (same for ``n``).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from .heuristics import BlockSizes

F32 = jnp.float32


class Gates(NamedTuple):
    """Per-token and per-chunk gate quantities (float32) the kernels read.

    b: (BH, S) within-chunk cumsum of log f (log f counted as 0 at document starts).
    key_gate: (BH, S) ``i - b``, so that the intra-chunk log decay is ``b_t + key_gate_s``.
    segment: (BH, S) float32 document index (cumsum of resets): pairs in different documents are masked.
    query_init: (BH, S) ``b + m_c``: log weight of the entering state for each query (-inf once a
      document starts earlier in the chunk).
    key_state: (BH, S) ``a - m_{c+1}``: log weight of each key in the state after its chunk (-inf if a
      document starts after it in the chunk).
    chunk_decay: (BH, NC) ``g_c + m_c - m_{c+1}``: log decay of the state across chunk ``c``.
    m: (BH, NC + 1) stabilizer of the states (``m[:, 0]`` is the initial one).
    """

    b: jax.Array
    segment: jax.Array
    key_gate: jax.Array
    query_init: jax.Array
    key_state: jax.Array
    chunk_decay: jax.Array
    m: jax.Array


def _reverse_cumsum(x, axis=-1):
    return jnp.flip(jnp.cumsum(jnp.flip(x, axis), axis=axis), axis)


def chunk_gates(i: jax.Array, log_f: jax.Array, resets: jax.Array, m0: jax.Array, chunk_size: int) -> Gates:
    """Gate preprocessing in plain JAX, float32: O(S) work, a log-depth scan over chunks for ``m``.

    Args: i, log_f: (BH, S) float32; resets: (BH, S) float32, 1 where a document starts (its log f
    is ignored: nothing crosses a document start, exactly); m0: (BH,) initial stabilizer;
    chunk_size: L (S % L == 0).
    """
    BH, S = i.shape
    L = chunk_size
    NC = S // L
    starts = resets.reshape(BH, NC, L)
    lf = jnp.where(starts > 0, 0.0, log_f.reshape(BH, NC, L))
    ii = i.reshape(BH, NC, L)
    b = jnp.cumsum(lf, axis=-1)
    started = jnp.cumsum(starts, axis=-1)  # document starts in the chunk up to and including t
    later = started[..., -1:] - started  # document starts in the chunk after t
    g = jnp.where(started[..., -1] > 0, -jnp.inf, b[..., -1])
    after = jnp.concatenate([lf[..., 1:], jnp.zeros_like(lf[..., :1])], axis=-1)
    a = jnp.where(later > 0, -jnp.inf, _reverse_cumsum(after) + ii)
    local = jnp.max(a, axis=-1)

    # m_{c+1} = max(g_c + m_c, local_c): a max-plus affine recurrence, composed associatively.
    def combine(x, y):
        return x[0] + y[0], jnp.maximum(x[1] + y[0], y[1])

    total, best = lax.associative_scan(combine, (g, local), axis=1)
    m_next = jnp.maximum(m0[:, None] + total, best)
    m = jnp.concatenate([m0[:, None], m_next], axis=1)
    return Gates(
        b=b.reshape(BH, S),
        segment=jnp.cumsum(resets, axis=-1),
        key_gate=(ii - b).reshape(BH, S),
        query_init=jnp.where(started > 0, -jnp.inf, b + m[:, :-1, None]).reshape(BH, S),
        key_state=(a - m_next[..., None]).reshape(BH, S),
        chunk_decay=g + m[:, :-1] - m_next,
        m=m,
    )


def dot(a, b, *, trans_a=False, trans_b=False, precision=None):
    """2-D matmul with float32 accumulation (the only dot form the Triton lowering takes)."""
    dims = (((0 if trans_a else 1,), (1 if trans_b else 0,)), ((), ()))
    return lax.dot_general(a, b, dims, precision=precision, preferred_element_type=F32)


def precision_for(dtype) -> lax.Precision:
    """IEEE float32 dots for float32 inputs (never TF32); the native MMA for 16-bit inputs."""
    return lax.Precision.HIGHEST if jnp.dtype(dtype) == jnp.float32 else lax.Precision.DEFAULT


def compiler_params(blocks: BlockSizes):
    return pltriton.CompilerParams(num_warps=blocks.num_warps, num_stages=blocks.num_stages)


# --------------------------------------------------------------------------------------------------
# Inter-chunk: the chunk states, sequential over chunks; grid (BH, DK / block_dqk, DV / block_dv).


def _states_kernel(k_ref, v_ref, key_state_ref, decay_ref, C0_ref, n0_ref, C_ref, n_ref, *,
                   L, NC, rows_per_step, scale, precision):
    mm = k_ref.dtype
    write_n = pl.program_id(2) == 0

    def store(c, C, n):
        C_ref[c] = C

        @pl.when(write_n)
        def _():
            n_ref[c] = n

    def body(c, carry):
        C, n = carry
        store(c, C, n)

        def part(u, acc):  # rows_per_step rows of the chunk at a time: the tiles do not grow with L
            dC, dn = acc
            rows = pl.ds(c * L + u * rows_per_step, rows_per_step)
            kbar = k_ref[rows, :].astype(F32) * (scale * jnp.exp(key_state_ref[rows]))[:, None]  # (rows, bk)
            return (dC + dot(kbar.astype(mm), v_ref[rows, :], trans_a=True, precision=precision),
                    dn + jnp.sum(kbar, axis=0))

        dC, dn = lax.fori_loop(0, L // rows_per_step, part, (jnp.zeros_like(C), jnp.zeros_like(n)))
        decay = jnp.exp(decay_ref[pl.ds(c, 1)])  # (1,)
        return decay[:, None] * C + dC, decay * n + dn

    C, n = lax.fori_loop(0, NC, body, (C0_ref[...], n0_ref[...]))
    store(NC, C, n)


def chunk_states(k, v, gates: Gates, C0, n0, *, chunk_size, scale, blocks: BlockSizes, interpret):
    """States entering every chunk and the last one: C (BH, NC+1, DK, DV), n (BH, NC+1, DK), float32."""
    BH, S, DK = k.shape
    DV = v.shape[-1]
    L, NC = chunk_size, S // chunk_size
    bk, bv = blocks.block_dqk, blocks.block_dv
    kernel = functools.partial(_states_kernel, L=L, NC=NC, rows_per_step=blocks.block_kv, scale=scale,
                               precision=precision_for(k.dtype))
    return pl.pallas_call(
        kernel,
        grid=(BH, DK // bk, DV // bv),
        in_specs=[
            pl.BlockSpec((None, S, bk), lambda h, a, e: (h, 0, a)),
            pl.BlockSpec((None, S, bv), lambda h, a, e: (h, 0, e)),
            pl.BlockSpec((None, S), lambda h, a, e: (h, 0)),
            pl.BlockSpec((None, NC), lambda h, a, e: (h, 0)),
            pl.BlockSpec((None, bk, bv), lambda h, a, e: (h, a, e)),
            pl.BlockSpec((None, bk), lambda h, a, e: (h, a)),
        ],
        out_specs=[
            pl.BlockSpec((None, NC + 1, bk, bv), lambda h, a, e: (h, 0, a, e)),
            pl.BlockSpec((None, NC + 1, bk), lambda h, a, e: (h, 0, a)),
        ],
        out_shape=[
            jax.ShapeDtypeStruct((BH, NC + 1, DK, DV), F32),
            jax.ShapeDtypeStruct((BH, NC + 1, DK), F32),
        ],
        compiler_params=compiler_params(blocks),
        interpret=interpret,
        name="mlstm_chunk_states",
    )(k, v, gates.key_state, gates.chunk_decay, C0, n0)


# --------------------------------------------------------------------------------------------------
# Intra-chunk: H, parallel over (BH, chunk, query tile, DV tile), looping over key tiles.


def causal_log_decay(b_q, seg_q, key_gate, seg_k, q_start, k_start):
    """(bq, bkv) log decay ``b_t - b_s + i_s`` for ``s <= t`` in the same document, else ``-inf``."""
    t = q_start + lax.broadcasted_iota(jnp.int32, (b_q.shape[0], key_gate.shape[0]), 0)
    s = k_start + lax.broadcasted_iota(jnp.int32, (b_q.shape[0], key_gate.shape[0]), 1)
    visible = (t >= s) & (seg_q[:, None] == seg_k[None, :])
    return jnp.where(visible, b_q[:, None] + key_gate[None, :], -jnp.inf)


# Floor of the running max: finite, so exp(-inf - floor) = 0 and no inf - inf arises.
MAX_FLOOR = -1e30


def _h_kernel(q_ref, k_ref, v_ref, b_ref, seg_q_ref, key_gate_ref, seg_k_ref, query_init_ref, C_ref, n_ref,
              h_ref, N_ref, m_ref, *, block_kv, block_dqk, scale, eps, precision):
    """H of a (block_q, block_dv) tile; contractions over DK run block_dqk columns at a time."""
    mm = q_ref.dtype
    block_q, DK = q_ref.shape
    n_dk = DK // block_dqk
    q_start = pl.program_id(2) * block_q
    b_q, seg_q = b_ref[...], seg_q_ref[...]

    def q_tile(a):
        return q_ref[:, pl.ds(a * block_dqk, block_dqk)]

    def inter(a, acc):
        num, den = acc
        q, dk = q_tile(a), pl.ds(a * block_dqk, block_dqk)
        return (num + dot(q, C_ref[dk, :].astype(mm), precision=precision),
                den + jnp.sum(q.astype(F32) * n_ref[dk][None, :], axis=1))

    # The entering state's log weight starts the running max (its terms then need no rescaling).
    query_init = query_init_ref[...]
    m = jnp.maximum(query_init, MAX_FLOOR)
    inter_w = jnp.exp(query_init - m)  # 1, or 0 after a document start in this chunk
    num, den = lax.fori_loop(0, n_dk, inter, (jnp.zeros(h_ref.shape, F32), jnp.zeros((block_q,), F32)))
    num, den = inter_w[:, None] * num, inter_w * den

    def body(j, carry):
        num, den, m = carry
        cols = pl.ds(j * block_kv, block_kv)

        def qk(a, acc):
            return acc + dot(q_tile(a), k_ref[cols, pl.ds(a * block_dqk, block_dqk)], trans_b=True, precision=precision)

        scores = lax.fori_loop(0, n_dk, qk, jnp.zeros((block_q, block_kv), F32)) * scale
        log_d = causal_log_decay(b_q, seg_q, key_gate_ref[cols], seg_k_ref[cols], q_start, j * block_kv)
        m_new = jnp.maximum(m, jnp.max(log_d, axis=1))
        alpha = jnp.exp(m - m_new)
        p = scores * jnp.exp(log_d - m_new[:, None])
        num = alpha[:, None] * num + dot(p.astype(mm), v_ref[cols, :], precision=precision)
        den = alpha * den + jnp.sum(p, axis=1)
        return num, den, m_new

    n_tiles = lax.div(q_start + block_q + block_kv - 1, block_kv)
    num, den, m = lax.fori_loop(0, n_tiles, body, (num, den, m))
    N = jnp.maximum(jnp.abs(den), jnp.exp(-m))
    h_ref[...] = (num / (N + eps)[:, None]).astype(h_ref.dtype)
    N_ref[...] = N
    m_ref[...] = m


def chunk_outputs(q, k, v, gates: Gates, C, n, *, chunk_size, scale, eps, blocks: BlockSizes, interpret):
    """H (BH, S, DV) in q's dtype, and the saved normalizer N and max m^comb (BH, S) float32."""
    BH, S, DK = q.shape
    DV = v.shape[-1]
    L = chunk_size
    NC = S // L
    bq, bv = blocks.block_q, blocks.block_dv
    nq = L // bq
    kernel = functools.partial(_h_kernel, block_kv=blocks.block_kv, block_dqk=blocks.block_dqk, scale=scale, eps=eps,
                               precision=precision_for(q.dtype))
    q_rows = lambda h, c, t, e: (h, c * nq + t)  # noqa: E731
    return pl.pallas_call(
        kernel,
        grid=(BH, NC, nq, DV // bv),
        in_specs=[
            pl.BlockSpec((None, bq, DK), lambda h, c, t, e: (*q_rows(h, c, t, e), 0)),
            pl.BlockSpec((None, L, DK), lambda h, c, t, e: (h, c, 0)),
            pl.BlockSpec((None, L, bv), lambda h, c, t, e: (h, c, e)),
            pl.BlockSpec((None, bq), q_rows),
            pl.BlockSpec((None, bq), q_rows),
            pl.BlockSpec((None, L), lambda h, c, t, e: (h, c)),
            pl.BlockSpec((None, L), lambda h, c, t, e: (h, c)),
            pl.BlockSpec((None, bq), q_rows),
            pl.BlockSpec((None, None, DK, bv), lambda h, c, t, e: (h, c, 0, e)),
            pl.BlockSpec((None, None, DK), lambda h, c, t, e: (h, c, 0)),
        ],
        out_specs=[
            pl.BlockSpec((None, bq, bv), lambda h, c, t, e: (*q_rows(h, c, t, e), e)),
            pl.BlockSpec((None, bq), q_rows),
            pl.BlockSpec((None, bq), q_rows),
        ],
        out_shape=[
            jax.ShapeDtypeStruct((BH, S, DV), q.dtype),
            jax.ShapeDtypeStruct((BH, S), F32),
            jax.ShapeDtypeStruct((BH, S), F32),
        ],
        compiler_params=compiler_params(blocks),
        interpret=interpret,
        name="mlstm_chunk_outputs",
    )(q, k, v, gates.b, gates.segment, gates.key_gate, gates.segment, gates.query_init, C, n)
