"""Backward kernels of the chunkwise mLSTM: the reverse state-gradient recurrence, dQ and dK/dV.

The normalizer ``N`` and the maxima ``m`` are constants here, as in TFLA (``shared/spec`` section
1.4): exact for any loss of the per-head-normalized output. With ``dH = dh / (N + eps)``,
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


def _dstates_kernel(q_ref, dh_ref, qbar_ref, inv_ref, decay_ref, dC_last_ref, dC_ref, *, L, NC, precision):
    mm = q_ref.dtype

    def body(r, dC):
        c = NC - 1 - r
        dC_ref[c + 1] = dC
        rows = pl.ds(c * L, L)
        qbar = (q_ref[rows, :].astype(F32) * jnp.exp(qbar_ref[rows])[:, None]).astype(mm)  # (L, bk)
        dh = (dh_ref[rows, :].astype(F32) * inv_ref[rows][:, None]).astype(mm)  # (L, bv)
        decay = jnp.exp(decay_ref[pl.ds(c, 1)])
        return decay[:, None] * dC + dot(qbar, dh, trans_a=True, precision=precision)

    dC_ref[0] = lax.fori_loop(0, NC, body, dC_last_ref[...])


def state_grads(q, dh, qbar_log, inv_N, gates: Gates, dC_last, *, chunk_size, blocks: BlockSizes, interpret):
    """Gradients of the states entering every chunk and of the last one: (BH, NC+1, DK, DV) float32.

    ``qbar_log = b + m_c - m^comb`` (BH, S); ``inv_N = 1 / (N + eps)`` (BH, S).
    """
    BH, S, DK = q.shape
    DV = dh.shape[-1]
    L, NC = chunk_size, S // chunk_size
    bk, bv = blocks.block_dqk, blocks.block_dv
    kernel = functools.partial(_dstates_kernel, L=L, NC=NC, precision=precision_for(q.dtype))
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


def _dq_kernel(q_ref, dh_ref, b_ref, seg_q_ref, mc_ref, inv_ref, qbar_ref, k_ref, v_ref, key_gate_ref, seg_k_ref,
               C_ref, dq_ref, *, block_kv, scale, precision):
    mm = q_ref.dtype
    block_q = q_ref.shape[0]
    q_start = pl.program_id(2) * block_q
    b_q, seg_q, m_comb = b_ref[...], seg_q_ref[...], mc_ref[...]
    dh = (dh_ref[...].astype(F32) * inv_ref[...][:, None]).astype(mm)  # (bq, DV)
    dq = jnp.exp(qbar_ref[...])[:, None] * dot(dh, C_ref[...].astype(mm), trans_b=True, precision=precision)

    def body(j, dq):
        cols = pl.ds(j * block_kv, block_kv)
        log_d = causal_log_decay(b_q, seg_q, key_gate_ref[cols], seg_k_ref[cols], q_start, j * block_kv)
        decay = jnp.exp(log_d - m_comb[:, None])
        ds = dot(dh, v_ref[cols, :], trans_b=True, precision=precision) * decay  # (bq, bkv)
        return dq + scale * dot(ds.astype(mm), k_ref[cols, :], precision=precision)

    n_tiles = lax.div(q_start + block_q + block_kv - 1, block_kv)
    dq_ref[...] = lax.fori_loop(0, n_tiles, body, dq)


def _dkdv_kernel(k_ref, v_ref, key_gate_ref, seg_k_ref, key_state_ref, q_ref, dh_ref, b_ref, seg_q_ref, mc_ref,
                 inv_ref, dC_ref, dk_ref, dv_ref, *, block_q, chunk_size, scale, precision):
    mm = k_ref.dtype
    block_kv = k_ref.shape[0]
    k_start = pl.program_id(2) * block_kv
    k, v, key_gate, seg_k = k_ref[...], v_ref[...], key_gate_ref[...], seg_k_ref[...]
    dC = dC_ref[...].astype(mm)  # gradient of the state after this chunk
    weight = scale * jnp.exp(key_state_ref[...])[:, None]
    dv = weight * dot(k, dC, precision=precision)  # (bkv, DV)
    dk = weight * dot(v, dC, trans_b=True, precision=precision)  # (bkv, DK)

    def body(t, carry):
        dk, dv = carry
        rows = pl.ds(t * block_q, block_q)
        q = q_ref[rows, :]
        dh = (dh_ref[rows, :].astype(F32) * inv_ref[rows][:, None]).astype(mm)
        log_d = causal_log_decay(b_ref[rows], seg_q_ref[rows], key_gate, seg_k, t * block_q, k_start)
        decay = jnp.exp(log_d - mc_ref[rows][:, None])
        scores = dot(q, k, trans_b=True, precision=precision) * (scale * decay)  # (bq, bkv)
        ds = dot(dh, v, trans_b=True, precision=precision) * decay
        dv = dv + dot(scores.astype(mm), dh, trans_a=True, precision=precision)
        dk = dk + scale * dot(ds.astype(mm), q, trans_a=True, precision=precision)
        return dk, dv

    first = lax.div(k_start, block_q)
    dk, dv = lax.fori_loop(first, chunk_size // block_q, body, (dk, dv))
    dk_ref[...] = dk
    dv_ref[...] = dv


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

    nq = L // bq
    rows = lambda h, c, t: (h, c * nq + t)  # noqa: E731
    dq = pl.pallas_call(
        functools.partial(_dq_kernel, block_kv=bkv, scale=scale, precision=precision),
        grid=(BH, NC, nq),
        in_specs=[
            pl.BlockSpec((None, bq, DK), lambda h, c, t: (*rows(h, c, t), 0)),
            pl.BlockSpec((None, bq, DV), lambda h, c, t: (*rows(h, c, t), 0)),
            pl.BlockSpec((None, bq), rows),
            pl.BlockSpec((None, bq), rows),
            pl.BlockSpec((None, bq), rows),
            pl.BlockSpec((None, bq), rows),
            pl.BlockSpec((None, bq), rows),
            pl.BlockSpec((None, L, DK), lambda h, c, t: (h, c, 0)),
            pl.BlockSpec((None, L, DV), lambda h, c, t: (h, c, 0)),
            pl.BlockSpec((None, L), lambda h, c, t: (h, c)),
            pl.BlockSpec((None, L), lambda h, c, t: (h, c)),
            pl.BlockSpec((None, None, DK, DV), lambda h, c, t: (h, c, 0, 0)),
        ],
        out_specs=pl.BlockSpec((None, bq, DK), lambda h, c, t: (*rows(h, c, t), 0)),
        out_shape=jax.ShapeDtypeStruct((BH, S, DK), F32),
        compiler_params=params,
        interpret=interpret,
        name="mlstm_chunk_dq",
    )(q, dh, gates.b, gates.segment, m_comb, inv_N, qbar_log, k, v, gates.key_gate, gates.segment, C)

    nk = L // bkv
    kv_rows = lambda h, c, t: (h, c * nk + t)  # noqa: E731
    dk, dv = pl.pallas_call(
        functools.partial(_dkdv_kernel, block_q=bq, chunk_size=L, scale=scale, precision=precision),
        grid=(BH, NC, nk),
        in_specs=[
            pl.BlockSpec((None, bkv, DK), lambda h, c, t: (*kv_rows(h, c, t), 0)),
            pl.BlockSpec((None, bkv, DV), lambda h, c, t: (*kv_rows(h, c, t), 0)),
            pl.BlockSpec((None, bkv), kv_rows),
            pl.BlockSpec((None, bkv), kv_rows),
            pl.BlockSpec((None, bkv), kv_rows),
            pl.BlockSpec((None, L, DK), lambda h, c, t: (h, c, 0)),
            pl.BlockSpec((None, L, DV), lambda h, c, t: (h, c, 0)),
            pl.BlockSpec((None, L), lambda h, c, t: (h, c)),
            pl.BlockSpec((None, L), lambda h, c, t: (h, c)),
            pl.BlockSpec((None, L), lambda h, c, t: (h, c)),
            pl.BlockSpec((None, L), lambda h, c, t: (h, c)),
            pl.BlockSpec((None, None, DK, DV), lambda h, c, t: (h, c + 1, 0, 0)),
        ],
        out_specs=[
            pl.BlockSpec((None, bkv, DK), lambda h, c, t: (*kv_rows(h, c, t), 0)),
            pl.BlockSpec((None, bkv, DV), lambda h, c, t: (*kv_rows(h, c, t), 0)),
        ],
        out_shape=[jax.ShapeDtypeStruct((BH, S, DK), F32), jax.ShapeDtypeStruct((BH, S, DV), F32)],
        compiler_params=params,
        interpret=interpret,
        name="mlstm_chunk_dkdv",
    )(k, v, gates.key_gate, gates.segment, gates.key_state, q, dh, gates.b, gates.segment, m_comb, inv_N, dC)
    return dq, dk, dv
