"""Backward kernels of the chunkwise mLSTM: the reverse state-gradient recurrence, dQ, dK and dV.

The normalizer ``N`` and the maxima ``m`` are constants here, as in TFLA (``docs/ops.md``, "The
math": the backward of the Pallas kernels): exact for any loss of the per-head-normalized output. With ``dH = dh / (N + eps)``,
``qbar_t = q_t exp(b_t + m_c - m^comb_t)`` and ``D_ts = exp(b_t - b_s + i_s - m^comb_t)`` (s <= t):

  dC_c = exp(g_c + m_c - m_{c+1}) dC_{c+1} + qbar^T dH          (reverse over chunks; dC_NC = dC_last)
  dS   = (dH V^T) * D
  dQ   = s dS K + qbar-weight * dH C_c^T
  dK   = s dS^T Q + s exp(a - m_{c+1}) V dC_{c+1}^T
  dV   = (s Q K^T * D)^T dH + s exp(a - m_{c+1}) K dC_{c+1}
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from .fwd import F32, Gates, causal_log_decay, compiler_params, dot, precision_for
from .heuristics import BlockSizes


def _dstates_kernel(q_ref, dh_ref, qbar_ref, inv_ref, decay_ref, dC_last_ref, dC_ref, *, L, NC, rows_per_step,
                    precision):
    mm = q_ref.dtype

    def body(r, dC):
        c = NC - 1 - r
        dC_ref[c + 1] = dC

        def part(u, acc):  # rows_per_step rows of the chunk at a time: the tiles do not grow with L
            rows = pl.ds(c * L + u * rows_per_step, rows_per_step)
            qbar = (q_ref[rows, :].astype(F32) * jnp.exp(qbar_ref[rows])[:, None]).astype(mm)  # (rows, bk)
            dh = (dh_ref[rows, :].astype(F32) * inv_ref[rows][:, None]).astype(mm)  # (rows, bv)
            return acc + dot(qbar, dh, trans_a=True, precision=precision)

        decay = jnp.exp(decay_ref[pl.ds(c, 1)])
        return decay[:, None] * dC + lax.fori_loop(0, L // rows_per_step, part, jnp.zeros_like(dC))

    dC_ref[0] = lax.fori_loop(0, NC, body, dC_last_ref[...])


def state_grads(q, dh, qbar_log, inv_N, gates: Gates, dC_last, *, chunk_size, blocks: BlockSizes, interpret):
    """Gradients of the states entering every chunk and of the last one: (BH, NC+1, DK, DV) float32.

    ``qbar_log = b + m_c - m^comb`` (BH, S); ``inv_N = 1 / (N + eps)`` (BH, S).
    """
    BH, S, DK = q.shape
    DV = dh.shape[-1]
    L, NC = chunk_size, S // chunk_size
    bk, bv = blocks.block_dqk, blocks.block_dv
    kernel = functools.partial(_dstates_kernel, L=L, NC=NC, rows_per_step=blocks.block_kv,
                               precision=precision_for(q.dtype))
    return pl.pallas_call(
        kernel,
        grid=(BH, DK // bk, DV // bv),
        in_specs=[
            pl.BlockSpec((None, S, bk), lambda h, a, e: (h, 0, a)),
            pl.BlockSpec((None, S, bv), lambda h, a, e: (h, 0, e)),
            pl.BlockSpec((None, S), lambda h, a, e: (h, 0)),
            pl.BlockSpec((None, S), lambda h, a, e: (h, 0)),
            pl.BlockSpec((None, NC), lambda h, a, e: (h, 0)),
            pl.BlockSpec((None, bk, bv), lambda h, a, e: (h, a, e)),
        ],
        out_specs=pl.BlockSpec((None, NC + 1, bk, bv), lambda h, a, e: (h, 0, a, e)),
        out_shape=jax.ShapeDtypeStruct((BH, NC + 1, DK, DV), F32),
        compiler_params=compiler_params(blocks),
        interpret=interpret,
        name="mlstm_chunk_state_grads",
    )(q, dh, qbar_log, inv_N, gates.chunk_decay, dC_last)


def _dq_kernel(dh_ref, b_ref, seg_q_ref, mc_ref, inv_ref, qbar_ref, k_ref, v_ref, key_gate_ref, seg_k_ref, C_ref,
               dq_ref, *, block_kv, block_dv, scale, precision):
    """dQ of a (block_q, block_dqk) tile; contractions over DV run block_dv columns at a time."""
    mm = k_ref.dtype
    block_q, DV = dh_ref.shape
    n_dv = DV // block_dv
    q_start = pl.program_id(2) * block_q
    b_q, seg_q, m_comb, inv = b_ref[...], seg_q_ref[...], mc_ref[...], inv_ref[...]

    def dh_tile(e):
        return (dh_ref[:, pl.ds(e * block_dv, block_dv)].astype(F32) * inv[:, None]).astype(mm)

    def inter(e, acc):
        C = C_ref[:, pl.ds(e * block_dv, block_dv)].astype(mm)
        return acc + dot(dh_tile(e), C, trans_b=True, precision=precision)

    dq = jnp.exp(qbar_ref[...])[:, None] * lax.fori_loop(0, n_dv, inter, jnp.zeros(dq_ref.shape, F32))

    def body(j, dq):
        cols = pl.ds(j * block_kv, block_kv)

        def scores(e, acc):
            return acc + dot(dh_tile(e), v_ref[cols, pl.ds(e * block_dv, block_dv)], trans_b=True, precision=precision)

        log_d = causal_log_decay(b_q, seg_q, key_gate_ref[cols], seg_k_ref[cols], q_start, j * block_kv)
        ds = lax.fori_loop(0, n_dv, scores, jnp.zeros((block_q, block_kv), F32)) * jnp.exp(log_d - m_comb[:, None])
        return dq + scale * dot(ds.astype(mm), k_ref[cols, :], precision=precision)

    n_tiles = lax.div(q_start + block_q + block_kv - 1, block_kv)
    dq_ref[...] = lax.fori_loop(0, n_tiles, body, dq)


def _dk_kernel(v_ref, key_gate_ref, seg_k_ref, key_state_ref, q_ref, dh_ref, b_ref, seg_q_ref, mc_ref, inv_ref,
               dC_ref, dk_ref, *, block_q, block_dv, chunk_size, scale, precision):
    """dK of a (block_kv, block_dqk) tile; contractions over DV run block_dv columns at a time."""
    mm = v_ref.dtype
    block_kv, DV = v_ref.shape
    n_dv = DV // block_dv
    k_start = pl.program_id(2) * block_kv
    key_gate, seg_k = key_gate_ref[...], seg_k_ref[...]

    def v_tile(e):
        return v_ref[:, pl.ds(e * block_dv, block_dv)]

    def inter(e, acc):
        return acc + dot(v_tile(e), dC_ref[:, pl.ds(e * block_dv, block_dv)].astype(mm), trans_b=True,
                         precision=precision)

    weight = scale * jnp.exp(key_state_ref[...])[:, None]
    dk = weight * lax.fori_loop(0, n_dv, inter, jnp.zeros(dk_ref.shape, F32))  # gradient through the next state

    def body(t, dk):
        rows = pl.ds(t * block_q, block_q)
        inv = inv_ref[rows]

        def scores(e, acc):
            dh = (dh_ref[rows, pl.ds(e * block_dv, block_dv)].astype(F32) * inv[:, None]).astype(mm)
            return acc + dot(dh, v_tile(e), trans_b=True, precision=precision)

        log_d = causal_log_decay(b_ref[rows], seg_q_ref[rows], key_gate, seg_k, t * block_q, k_start)
        ds = lax.fori_loop(0, n_dv, scores, jnp.zeros((block_q, block_kv), F32)) * jnp.exp(log_d - mc_ref[rows][:, None])
        return dk + scale * dot(ds.astype(mm), q_ref[rows, :], trans_a=True, precision=precision)

    first = lax.div(k_start, block_q)
    dk_ref[...] = lax.fori_loop(first, chunk_size // block_q, body, dk)


def _dv_kernel(k_ref, key_gate_ref, seg_k_ref, key_state_ref, q_ref, dh_ref, b_ref, seg_q_ref, mc_ref, inv_ref,
               dC_ref, dv_ref, *, block_q, block_dqk, chunk_size, scale, precision):
    """dV of a (block_kv, block_dv) tile; contractions over DK run block_dqk columns at a time."""
    mm = k_ref.dtype
    block_kv, DK = k_ref.shape
    n_dk = DK // block_dqk
    k_start = pl.program_id(2) * block_kv
    key_gate, seg_k = key_gate_ref[...], seg_k_ref[...]

    def k_tile(a):
        return k_ref[:, pl.ds(a * block_dqk, block_dqk)]

    def inter(a, acc):
        return acc + dot(k_tile(a), dC_ref[pl.ds(a * block_dqk, block_dqk), :].astype(mm), precision=precision)

    weight = scale * jnp.exp(key_state_ref[...])[:, None]
    dv = weight * lax.fori_loop(0, n_dk, inter, jnp.zeros(dv_ref.shape, F32))  # gradient through the next state

    def body(t, dv):
        rows = pl.ds(t * block_q, block_q)

        def scores(a, acc):
            return acc + dot(q_ref[rows, pl.ds(a * block_dqk, block_dqk)], k_tile(a), trans_b=True, precision=precision)

        log_d = causal_log_decay(b_ref[rows], seg_q_ref[rows], key_gate, seg_k, t * block_q, k_start)
        p = lax.fori_loop(0, n_dk, scores, jnp.zeros((block_q, block_kv), F32)) * (
            scale * jnp.exp(log_d - mc_ref[rows][:, None]))
        dh = (dh_ref[rows, :].astype(F32) * inv_ref[rows][:, None]).astype(mm)
        return dv + dot(p.astype(mm), dh, trans_a=True, precision=precision)

    first = lax.div(k_start, block_q)
    dv_ref[...] = lax.fori_loop(first, chunk_size // block_q, body, dv)


def input_grads(q, k, v, dh, gates: Gates, m_comb, qbar_log, inv_N, C, dC, *, chunk_size, scale,
                blocks: BlockSizes, interpret):
    """dq, dk (BH, S, DK) and dv (BH, S, DV), float32.

    ``C``: states entering each chunk (BH, NC+1, DK, DV); ``dC``: their gradients.
    """
    BH, S, DK = q.shape
    DV = v.shape[-1]
    L = chunk_size
    NC = S // L
    bq, bkv = blocks.block_q, blocks.block_kv
    precision = precision_for(q.dtype)
    params = compiler_params(blocks)

    bk, bv = blocks.block_dqk, blocks.block_dv
    per_token = lambda index, n: pl.BlockSpec((None, n), index)  # noqa: E731  (BH, S) float32 gate rows

    nq = L // bq
    q_rows = lambda h, c, t, a: (h, c * nq + t)  # noqa: E731
    chunk = lambda h, c, t, a: (h, c)  # noqa: E731
    dq = pl.pallas_call(
        functools.partial(_dq_kernel, block_kv=bkv, block_dv=bv, scale=scale, precision=precision),
        grid=(BH, NC, nq, DK // bk),
        in_specs=[
            pl.BlockSpec((None, bq, DV), lambda h, c, t, a: (*q_rows(h, c, t, a), 0)),
            *[per_token(q_rows, bq) for _ in range(5)],  # b, segment, m_comb, inv_N, qbar_log
            pl.BlockSpec((None, L, bk), lambda h, c, t, a: (h, c, a)),
            pl.BlockSpec((None, L, DV), lambda h, c, t, a: (h, c, 0)),
            per_token(chunk, L),
            per_token(chunk, L),
            pl.BlockSpec((None, None, bk, DV), lambda h, c, t, a: (h, c, a, 0)),
        ],
        out_specs=pl.BlockSpec((None, bq, bk), lambda h, c, t, a: (*q_rows(h, c, t, a), a)),
        out_shape=jax.ShapeDtypeStruct((BH, S, DK), F32),
        compiler_params=params,
        interpret=interpret,
        name="mlstm_chunk_dq",
    )(dh, gates.b, gates.segment, m_comb, inv_N, qbar_log, k, v, gates.key_gate, gates.segment, C)

    nk = L // bkv
    kv_rows = lambda h, c, t, a: (h, c * nk + t)  # noqa: E731
    key_specs = [per_token(kv_rows, bkv) for _ in range(3)]  # key_gate, segment, key_state
    query_specs = [per_token(chunk, L) for _ in range(4)]  # b, segment, m_comb, inv_N
    key_args = (gates.key_gate, gates.segment, gates.key_state)
    query_args = (gates.b, gates.segment, m_comb, inv_N)
    dk = pl.pallas_call(
        functools.partial(_dk_kernel, block_q=bq, block_dv=bv, chunk_size=L, scale=scale, precision=precision),
        grid=(BH, NC, nk, DK // bk),
        in_specs=[
            pl.BlockSpec((None, bkv, DV), lambda h, c, t, a: (*kv_rows(h, c, t, a), 0)),
            *key_specs,
            pl.BlockSpec((None, L, bk), lambda h, c, t, a: (h, c, a)),
            pl.BlockSpec((None, L, DV), lambda h, c, t, a: (h, c, 0)),
            *query_specs,
            pl.BlockSpec((None, None, bk, DV), lambda h, c, t, a: (h, c + 1, a, 0)),
        ],
        out_specs=pl.BlockSpec((None, bkv, bk), lambda h, c, t, a: (*kv_rows(h, c, t, a), a)),
        out_shape=jax.ShapeDtypeStruct((BH, S, DK), F32),
        compiler_params=params,
        interpret=interpret,
        name="mlstm_chunk_dk",
    )(v, *key_args, q, dh, *query_args, dC)
    dv = pl.pallas_call(
        functools.partial(_dv_kernel, block_q=bq, block_dqk=bk, chunk_size=L, scale=scale, precision=precision),
        grid=(BH, NC, nk, DV // bv),
        in_specs=[
            pl.BlockSpec((None, bkv, DK), lambda h, c, t, e: (*kv_rows(h, c, t, e), 0)),
            *key_specs,
            pl.BlockSpec((None, L, DK), lambda h, c, t, e: (h, c, 0)),
            pl.BlockSpec((None, L, bv), lambda h, c, t, e: (h, c, e)),
            *query_specs,
            pl.BlockSpec((None, None, DK, bv), lambda h, c, t, e: (h, c + 1, 0, e)),
        ],
        out_specs=pl.BlockSpec((None, bkv, bv), lambda h, c, t, e: (*kv_rows(h, c, t, e), e)),
        out_shape=jax.ShapeDtypeStruct((BH, S, DV), F32),
        compiler_params=params,
        interpret=interpret,
        name="mlstm_chunk_dv",
    )(k, *key_args, q, dh, *query_args, dC)
    return dq, dk, dv
