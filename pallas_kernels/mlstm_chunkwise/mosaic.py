"""The chunkwise mLSTM kernels on Pallas's Mosaic GPU backend (Hopper and newer: TMA, wgmma).

Same contract and math as the Triton kernels (``fwd.py``, ``bwd.py``; ``docs/ops.md``, "The math"), and
the same four entry points with the same arguments, so ``api.py`` runs either: ``chunk_states``,
``chunk_outputs``, ``state_grads``, ``input_grads``. Arrays arrive flattened and padded by ``api.py``:
``q, k: (BH, S, DK)``, ``v: (BH, S, DV)``, with ``S = NC * L``, ``L`` a power of two >= 64 and head dims
multiples of 64 (``MOSAIC_TILE``).

Every kernel runs one warpgroup per program on 64 x 64 tiles: operands are copied to shared memory by
TMA (tiled and 128-byte swizzled, as wgmma reads them), products run on wgmma with float32
accumulators in registers, and the gate math is float32 in registers. Inputs are 16-bit (bfloat16,
float16): wgmma has no IEEE float32 mode (float32 operands would run as TF32), so float32 calls stay
on the Triton kernels or XLA.

Where the Triton kernels cast a float32 product to the input dtype inside the kernel before a dot (the
weighted keys ``kbar``, the weighted queries ``qbar``, ``dh / (N + eps)``), these kernels read the same
cast made by XLA beforehand; the state recurrences write the states ``C`` and ``dC`` in the inputs'
16-bit dtype (what the Triton kernels cast them to before their dots), with the last ``C`` and the
first ``dC`` also in float32. The normalizer state ``n`` (a vector per chunk) and the query-normalizer
products ``q . n`` are computed by XLA in float32.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import mosaic_gpu as plgpu

from .fwd import MAX_FLOOR, Gates

F32 = jnp.float32
MOSAIC_TILE = 64  # rows and columns of every tile: one warpgroup's wgmma M, and 128 bytes of 16-bit K
ROWS_PER_COPY = 128  # chunk rows per TMA copy in the state recurrences (shared memory does not grow with L)
SMEM_BUDGET = 200 * 1024  # bytes of shared memory a kernel plans for (H100: 227 KiB per block, less Mosaic's own)


def interpret_params(interpret: bool):
    """GPU interpret mode (CPU simulation of shared memory, threads, barriers and TMA) with race
    detection that raises, or None to compile for the GPU."""
    return plgpu.InterpretGPUParams(detect_races=True) if interpret else None


def _smem(shape, dtype):
    """Shared memory for a 16-bit wgmma operand: (8, 64) tiles, 128-byte swizzle."""
    return plgpu.SMEM(shape, dtype, transforms=(plgpu.TilingTransform((8, MOSAIC_TILE)), plgpu.SwizzleTransform(128)))


_ROW = plgpu.Layout.WGMMA.reduce(1)  # one value per row of a 64 x N accumulator tile
_COL = plgpu.Layout.WGMMA.reduce(0)  # one value per column


def _rows(x, shape):
    return lax.broadcast_in_dim(x, shape, [0])


def _cols(x, shape):
    return lax.broadcast_in_dim(x, shape, [1])


def _fetch(barriers, *copies):
    """TMA copies ``(gmem_ref, smem_ref)``, one barrier each, then wait for all of them. The buffers may
    have been read by this warpgroup's threads: a proxy fence and warpgroup barrier first
    (``commit_smem``), so that no TMA overwrites what a thread has yet to read."""
    plgpu.commit_smem()
    for index, (src, dst) in enumerate(copies):
        plgpu.copy_gmem_to_smem(src, dst, barriers.at[index])
    for index in range(len(copies)):
        plgpu.barrier_wait(barriers.at[index])


def _stream(bars, stages, start, stop, copies, body, carry):
    """``lax.fori_loop(start, stop, body)`` whose step ``t`` reads the shared-memory buffers that
    ``copies(t, slot)`` (``[(gmem_ref, smem_ref)]``, one barrier each in ``bars``) fills; ``body(t,
    slot, carry)``. With two stages the copies of step t + 1 go out before step t computes (double
    buffering); the slot they fill was last read in step t - 1, which has finished (``commit_smem``
    orders its reads before the copy, as in ``_fetch``)."""
    n = len(copies(start, 0))

    def issue(t):
        slot = lax.rem(t - start, jnp.int32(stages))
        plgpu.commit_smem()
        for index, (src, dst) in enumerate(copies(t, slot)):
            plgpu.copy_gmem_to_smem(src, dst, bars.at[slot * n + index])

    def step(t, carry):
        if stages == 1:
            issue(t)
        else:
            pl.when(t + 1 < stop)(lambda: issue(t + 1))
        slot = lax.rem(t - start, jnp.int32(stages))
        for index in range(n):
            plgpu.barrier_wait(bars.at[slot * n + index])
        return body(t, slot, carry)

    if stages > 1:
        pl.when(start < stop)(lambda: issue(start))
    return lax.fori_loop(start, stop, step, carry)


def _stages(fixed_bytes: int, streamed_bytes: int) -> int:
    """Two buffers per streamed operand (double buffering) where they fit ``SMEM_BUDGET``, else one."""
    return 2 if fixed_bytes + 2 * streamed_bytes <= SMEM_BUDGET else 1


def _zeros():
    return plgpu.layout_cast(jnp.zeros((MOSAIC_TILE, MOSAIC_TILE), F32), plgpu.Layout.WGMMA)


def _mma(acc, *pairs):
    """``acc + sum(a @ b)`` over ``pairs`` on wgmma; ``a`` a register array or a shared-memory ref."""
    def body(acc_ref):
        for a, b in pairs:
            plgpu.wgmma(acc_ref, a, b)
    return pl.run_state(body)(plgpu.ACC.init(acc))


def _store(value, smem, dst):
    """``value`` to shared memory, then TMA to ``dst``; waits until the copy has read it."""
    smem[...] = value.astype(smem.dtype)
    plgpu.commit_smem()
    plgpu.copy_smem_to_gmem(smem, dst)
    plgpu.wait_smem_to_gmem(0)


def _call(body, scratch, out_type, grid, interpret, name):
    def entry(*refs):
        pl.run_scoped(lambda *s: body(*refs, *s), *scratch)

    entry.__name__ = entry.__qualname__ = name  # the kernel's name in profiles and compiler dumps
    return plgpu.kernel(entry, out_type=out_type, grid=grid, grid_names=("bh", "x", "y"),
                        compiler_params=plgpu.CompilerParams(), interpret=interpret_params(interpret))


# --------------------------------------------------------------------------------------------------
# The state recurrences: C (forward, over chunks) and dC (backward, reverse): grid (BH, DK/64, DV/64).


def _recurrence_kernel(a_gm, b_gm, decay_gm, init_gm, out_gm, last_gm, a_s, b_s, decay_s, init_s, st_s, bars,
                       sbars, *, L, NC, reverse):
    """``out[c]`` for every c, in the inputs' 16-bit dtype: ``S_0 = init``, ``S_{c+1} = exp(decay_c) S_c +
    A_c^T B_c`` (or the same in reverse from ``S_NC = init``), on one (64, 64) tile of the state, and the
    last one (``S_NC``, or ``S_0`` in reverse) in float32 as ``last``."""
    stages, P, T = a_s.shape[0], a_s.shape[1], MOSAIC_TILE
    h, x, y = lax.axis_index("bh"), lax.axis_index("x"), lax.axis_index("y")
    cols_a, cols_b = pl.ds(x * T, T), pl.ds(y * T, T)
    _fetch(bars, (decay_gm.at[h], decay_s), (init_gm.at[h, cols_a, cols_b], init_s))
    acc = plgpu.load(init_s, layout=plgpu.Layout.WGMMA)

    def chunk(r, acc):
        c = NC - 1 - r if reverse else r
        _store(acc, st_s, out_gm.at[h, c + 1 if reverse else c, cols_a, cols_b])
        acc = acc * jnp.exp(decay_s[c])

        def copies(u, slot):
            rows = pl.ds(c * L + u * P, P)
            return [(a_gm.at[h, rows, cols_a], a_s.at[slot]), (b_gm.at[h, rows, cols_b], b_s.at[slot])]

        def part(u, slot, acc):
            a, b = a_s.at[slot], b_s.at[slot]
            return _mma(acc, *[(a.at[pl.ds(w * T, T)].T, b.at[pl.ds(w * T, T)]) for w in range(P // T)])

        return _stream(sbars, stages, 0, L // P, copies, part, acc)

    acc = lax.fori_loop(0, NC, chunk, acc)
    _store(acc, st_s, out_gm.at[h, 0 if reverse else NC, cols_a, cols_b])
    _store(acc, init_s, last_gm.at[h, cols_a, cols_b])


def _recurrence(a, b, decay, init, *, chunk_size, reverse, interpret, name):
    """(every state (BH, NC+1, DK, DV) in a's dtype, the last one (BH, DK, DV) float32)."""
    BH, S, DK = a.shape
    DV = b.shape[-1]
    L, NC, T = chunk_size, S // chunk_size, MOSAIC_TILE
    P = min(L, ROWS_PER_COPY)
    decay = jnp.pad(decay, ((0, 0), (0, -NC % 4)))  # TMA: rows of a multiple of 16 bytes
    kernel = functools.partial(_recurrence_kernel, L=L, NC=NC, reverse=reverse)
    stages = 2  # 2 x 2 x 16 KiB
    scratch = (_smem((stages, P, T), a.dtype), _smem((stages, P, T), b.dtype), plgpu.SMEM(decay.shape[1:], F32),
               plgpu.SMEM((T, T), F32), _smem((T, T), a.dtype), plgpu.Barrier(num_barriers=2),
               plgpu.Barrier(num_barriers=2 * stages))
    out = (jax.ShapeDtypeStruct((BH, NC + 1, DK, DV), a.dtype), jax.ShapeDtypeStruct((BH, DK, DV), F32))
    return _call(kernel, scratch, out, (BH, DK // T, DV // T), interpret, name)(a, b, decay, init)


def _normalizer_states(k, gates: Gates, n0, scale, chunk_size):
    """n entering every chunk and the last one, (BH, NC+1, DK) float32, in XLA: a linear recurrence over
    chunks of per-chunk key sums (float32 keys, as the Triton kernel's)."""
    BH, S, DK = k.shape
    NC = S // chunk_size
    kbar = k.astype(F32) * (scale * jnp.exp(gates.key_state))[..., None]
    sums = kbar.reshape(BH, NC, chunk_size, DK).sum(axis=2)
    decay = jnp.exp(gates.chunk_decay)

    def combine(x, y):
        return x[0] * y[0], y[0][..., None] * x[1] + y[1]

    total, acc = lax.associative_scan(combine, (decay, sums), axis=1)
    n_next = total[..., None] * n0[:, None, :] + acc
    return jnp.concatenate([n0[:, None, :], n_next], axis=1)


def chunk_states(k, v, gates: Gates, C0, n0, *, chunk_size, scale, blocks=None, interpret):
    """States entering every chunk and the last one: C (BH, NC+1, DK, DV) in k's dtype (what the other
    kernels read), n (BH, NC+1, DK) float32, and the last C (BH, DK, DV) float32."""
    del blocks  # the tiles are fixed (MOSAIC_TILE)
    kbar = (k.astype(F32) * (scale * jnp.exp(gates.key_state))[..., None]).astype(k.dtype)
    C, C_last = _recurrence(kbar, v, gates.chunk_decay, C0, chunk_size=chunk_size, reverse=False,
                            interpret=interpret, name="mlstm_chunk_states_mosaic")
    return C, _normalizer_states(k, gates, n0, scale, chunk_size), C_last


def state_grads(q, dh, qbar_log, inv_N, gates: Gates, dC_last, *, chunk_size, blocks=None, interpret):
    """Gradients of the states entering every chunk and of the last one (BH, NC+1, DK, DV) in q's dtype,
    and of the first (BH, DK, DV) float32."""
    del blocks
    qbar = (q.astype(F32) * jnp.exp(qbar_log)[..., None]).astype(q.dtype)
    dhs = (dh.astype(F32) * inv_N[..., None]).astype(q.dtype)
    return _recurrence(qbar, dhs, gates.chunk_decay, dC_last, chunk_size=chunk_size, reverse=True,
                       interpret=interpret, name="mlstm_chunk_state_grads_mosaic")


# --------------------------------------------------------------------------------------------------
# Intra-chunk kernels: grid (BH, chunk tiles NC * L/64, head-dim tiles); every loop step copies one
# 64-row tile of the other side of the chunk.


def _decay(row_vec, col_vec, row_seg, col_seg, row_start, col_start, *, query_rows):
    """(64, 64) log decay ``b_t + key_gate_s`` where key ``s`` reaches query ``t`` (``s <= t``, one
    document), else -inf; queries on the rows (``query_rows``) or on the columns."""
    shape = (MOSAIC_TILE, MOSAIC_TILE)
    r = row_start + plgpu.broadcasted_iota(jnp.int32, shape, 0, layout=plgpu.Layout.WGMMA)
    c = col_start + plgpu.broadcasted_iota(jnp.int32, shape, 1, layout=plgpu.Layout.WGMMA)
    causal = r >= c if query_rows else c >= r
    visible = causal & (_rows(row_seg, shape) == _cols(col_seg, shape))
    return jnp.where(visible, _rows(row_vec, shape) + _cols(col_vec, shape), -jnp.inf)


def _tiles(ref, n):
    """The n column tiles (64 wide) of a shared-memory ref."""
    return [ref.at[:, pl.ds(a * MOSAIC_TILE, MOSAIC_TILE)] for a in range(n)]


def _outputs_kernel(q_gm, k_gm, v_gm, C_gm, qv_gm, kv_gm, h_gm, N_gm, m_gm,
                    q_s, C_s, k_s, v_s, qv_s, kv_s, h_s, vec_s, bars, sbars, *, L, scale, eps):
    T = MOSAIC_TILE
    nq = L // T
    n_dk = q_s.shape[1] // T
    h, x, e = lax.axis_index("bh"), lax.axis_index("x"), lax.axis_index("y")
    c, t = lax.div(x, jnp.int32(nq)), lax.rem(x, jnp.int32(nq))
    q_rows, dv = pl.ds(x * T, T), pl.ds(e * T, T)
    _fetch(bars, (q_gm.at[h, q_rows], q_s), (C_gm.at[h, c, :, dv], C_s), (qv_gm.at[h, :, q_rows], qv_s))
    b_q, seg_q, query_init, qn = (plgpu.load(qv_s.at[g], layout=_ROW) for g in range(4))
    q_tiles = _tiles(q_s, n_dk)

    # The entering state's log weight starts the running max (its terms then need no rescaling).
    m = jnp.maximum(query_init, MAX_FLOOR)
    inter_w = jnp.exp(query_init - m)  # 1, or 0 after a document start in this chunk
    num = _mma(_zeros(), *[(q_tiles[a], C_s.at[pl.ds(a * T, T)]) for a in range(n_dk)])
    num = _rows(inter_w, num.shape) * num
    den = inter_w * qn

    def copies(j, slot):
        k_rows = pl.ds(c * L + j * T, T)
        return [(k_gm.at[h, k_rows], k_s.at[slot]), (v_gm.at[h, k_rows, dv], v_s.at[slot]),
                (kv_gm.at[h, :, k_rows], kv_s.at[slot])]

    def body(j, slot, carry):
        num, den, m = carry
        k_tile, v_tile, kv = k_s.at[slot], v_s.at[slot], kv_s.at[slot]
        scores = _mma(_zeros(), *[(qa, ka.T) for qa, ka in zip(q_tiles, _tiles(k_tile, n_dk))]) * scale
        key_gate, seg_k = (plgpu.load(kv.at[g], layout=_COL) for g in range(2))
        log_d = _decay(b_q, key_gate, seg_q, seg_k, t * T, j * T, query_rows=True)
        m_new = jnp.maximum(m, jnp.max(log_d, axis=1))
        alpha = jnp.exp(m - m_new)
        p = scores * jnp.exp(log_d - _rows(m_new, log_d.shape))
        num = _mma(_rows(alpha, num.shape) * num, (p.astype(v_tile.dtype), v_tile))
        return num, alpha * den + jnp.sum(p, axis=1), m_new

    num, den, m = _stream(sbars, k_s.shape[0], 0, t + 1, copies, body, (num, den, m))
    N = jnp.maximum(jnp.abs(den), jnp.exp(-m))
    _store(num / _rows(N + eps, num.shape), h_s, h_gm.at[h, q_rows, dv])

    @pl.when(e == 0)
    def _():
        _store(N, vec_s, N_gm.at[h, q_rows])
        _store(m, vec_s, m_gm.at[h, q_rows])


def chunk_outputs(q, k, v, gates: Gates, C, n, *, chunk_size, scale, eps, blocks=None, interpret):
    """H (BH, S, DV) in q's dtype, and the saved normalizer N and max m^comb (BH, S) float32."""
    del blocks
    BH, S, DK = q.shape
    DV = v.shape[-1]
    L, NC, T = chunk_size, S // chunk_size, MOSAIC_TILE
    qn = jnp.einsum("bcld,bcd->bcl", q.astype(F32).reshape(BH, NC, L, DK), n[:, :NC],
                    precision=lax.Precision.HIGHEST).reshape(BH, S)
    qv = jnp.stack([gates.b, gates.segment, gates.query_init, qn], axis=1)  # (BH, 4, S)
    kv = jnp.stack([gates.key_gate, gates.segment], axis=1)
    kernel = functools.partial(_outputs_kernel, L=L, scale=scale, eps=eps)
    stages = _stages(2 * (2 * T * DK + T * T) + 4 * T * 4, 2 * (T * DK + T * T) + 2 * T * 4)
    scratch = (_smem((T, DK), q.dtype), _smem((DK, T), q.dtype), _smem((stages, T, DK), q.dtype),
               _smem((stages, T, T), q.dtype), plgpu.SMEM((4, T), F32), plgpu.SMEM((stages, 2, T), F32),
               _smem((T, T), q.dtype), plgpu.SMEM((T,), F32), plgpu.Barrier(num_barriers=3),
               plgpu.Barrier(num_barriers=3 * stages))
    out = (jax.ShapeDtypeStruct((BH, S, DV), q.dtype), jax.ShapeDtypeStruct((BH, S), F32),
           jax.ShapeDtypeStruct((BH, S), F32))
    return _call(kernel, scratch, out, (BH, S // T, DV // T), interpret, "mlstm_chunk_outputs_mosaic")(
        q, k, v, C, qv, kv)


def _dq_kernel(dhs_gm, C_gm, k_gm, v_gm, qv_gm, kv_gm, dq_gm, dhs_s, C_s, k_s, v_s, qv_s, kv_s, out_s, bars, sbars,
               *, L, scale):
    """dQ of a (64 queries, 64 DK columns) tile."""
    T = MOSAIC_TILE
    nq = L // T
    n_dv = dhs_s.shape[1] // T
    h, x, a = lax.axis_index("bh"), lax.axis_index("x"), lax.axis_index("y")
    c, t = lax.div(x, jnp.int32(nq)), lax.rem(x, jnp.int32(nq))
    q_rows, dk = pl.ds(x * T, T), pl.ds(a * T, T)
    _fetch(bars, (dhs_gm.at[h, q_rows], dhs_s), (C_gm.at[h, c, dk], C_s), (qv_gm.at[h, :, q_rows], qv_s))
    b_q, seg_q, m_comb, qbar_w = (plgpu.load(qv_s.at[g], layout=_ROW) for g in range(4))
    dh_tiles = _tiles(dhs_s, n_dv)
    dq = _mma(_zeros(), *[(dha, Ce.T) for dha, Ce in zip(dh_tiles, _tiles(C_s, n_dv))])
    dq = _rows(qbar_w, dq.shape) * dq

    def copies(j, slot):
        k_rows = pl.ds(c * L + j * T, T)
        return [(k_gm.at[h, k_rows, dk], k_s.at[slot]), (v_gm.at[h, k_rows], v_s.at[slot]),
                (kv_gm.at[h, :, k_rows], kv_s.at[slot])]

    def body(j, slot, dq):
        k_tile, v_tile, kv = k_s.at[slot], v_s.at[slot], kv_s.at[slot]
        key_gate, seg_k = (plgpu.load(kv.at[g], layout=_COL) for g in range(2))
        ds = _mma(_zeros(), *[(dha, ve.T) for dha, ve in zip(dh_tiles, _tiles(v_tile, n_dv))])
        log_d = _decay(b_q, key_gate, seg_q, seg_k, t * T, j * T, query_rows=True)
        ds = ds * (scale * jnp.exp(log_d - _rows(m_comb, log_d.shape)))
        return _mma(dq, (ds.astype(k_tile.dtype), k_tile))

    _store(_stream(sbars, k_s.shape[0], 0, t + 1, copies, body, dq), out_s, dq_gm.at[h, q_rows, dk])


def _key_grad_kernel(left_gm, dC_gm, score_gm, prod_gm, kv_gm, qv_gm, out_gm, left_s, dC_s, score_s, prod_s, kv_s,
                     qv_s, out_s, bars, sbars, *, L, scale, dk):
    """dK (``dk``: left = v, score = dh, prod = q) or dV (left = k, score = q, prod = dh) of a (64 keys,
    64 columns) tile; the score tiles (dS^T or P^T) are computed with the keys on the rows:

      dK = s w V dC_{c+1}^T + sum_t s (V dH_t^T * D^T) Q_t      dV = s w K dC_{c+1} + sum_t s (K Q_t^T * D^T) dH_t
    """
    T = MOSAIC_TILE
    nk = L // T
    n = left_s.shape[1] // T  # head-dim tiles of the contraction
    h, x, a = lax.axis_index("bh"), lax.axis_index("x"), lax.axis_index("y")
    c, j = lax.div(x, jnp.int32(nk)), lax.rem(x, jnp.int32(nk))
    k_rows, cols = pl.ds(x * T, T), pl.ds(a * T, T)
    state = dC_gm.at[h, c + 1, cols] if dk else dC_gm.at[h, c + 1, :, cols]  # (64, DV) or (DK, 64)
    _fetch(bars, (left_gm.at[h, k_rows], left_s), (state, dC_s), (kv_gm.at[h, :, k_rows], kv_s))
    key_gate, seg_k, key_state = (plgpu.load(kv_s.at[g], layout=_ROW) for g in range(3))
    left = _tiles(left_s, n)
    state_parts = [d.T for d in _tiles(dC_s, n)] if dk else [dC_s.at[pl.ds(i * T, T)] for i in range(n)]
    grad = _mma(_zeros(), *zip(left, state_parts))
    grad = _rows(scale * jnp.exp(key_state), grad.shape) * grad  # through the next state

    def copies(t, slot):
        q_rows = pl.ds(c * L + t * T, T)
        return [(score_gm.at[h, q_rows], score_s.at[slot]), (prod_gm.at[h, q_rows, cols], prod_s.at[slot]),
                (qv_gm.at[h, :, q_rows], qv_s.at[slot])]

    def body(t, slot, grad):
        score, prod, qv = score_s.at[slot], prod_s.at[slot], qv_s.at[slot]
        b_q, seg_q, m_comb = (plgpu.load(qv.at[g], layout=_COL) for g in range(3))
        scores = _mma(_zeros(), *[(la, sa.T) for la, sa in zip(left, _tiles(score, n))])
        log_d = _decay(key_gate, b_q, seg_k, seg_q, j * T, t * T, query_rows=False)
        scores = scores * (scale * jnp.exp(log_d - _cols(m_comb, log_d.shape)))
        return _mma(grad, (scores.astype(prod.dtype), prod))

    _store(_stream(sbars, score_s.shape[0], j, nk, copies, body, grad), out_s, out_gm.at[h, k_rows, cols])


def input_grads(q, k, v, dh, gates: Gates, m_comb, qbar_log, inv_N, C, dC, *, chunk_size, scale, blocks=None,
                interpret):
    """dq, dk (BH, S, DK) and dv (BH, S, DV), float32.

    ``C``: states entering each chunk (BH, NC+1, DK, DV); ``dC``: their gradients; both in q's dtype.
    """
    del blocks
    BH, S, DK = q.shape
    DV = v.shape[-1]
    L, T, mm = chunk_size, MOSAIC_TILE, q.dtype
    dhs = (dh.astype(F32) * inv_N[..., None]).astype(mm)
    Cm, dCm = C, dC
    qv_dq = jnp.stack([gates.b, gates.segment, m_comb, jnp.exp(qbar_log)], axis=1)
    kv_dq = jnp.stack([gates.key_gate, gates.segment], axis=1)
    kv = jnp.stack([gates.key_gate, gates.segment, gates.key_state], axis=1)
    qv = jnp.stack([gates.b, gates.segment, m_comb], axis=1)
    tile, vec = (lambda *shape: _smem(shape, mm)), (lambda *shape: plgpu.SMEM((*shape, T), F32))
    out_tile = plgpu.SMEM((T, T), F32)
    bars = plgpu.Barrier(num_barriers=3)
    grid_k, grid_v = (BH, S // T, DK // T), (BH, S // T, DV // T)

    def scratch(fixed, streamed, n_fixed_vec, n_streamed_vec):
        """Shared memory: fixed 16-bit tiles, per-stage streamed tiles, vectors, the output tile, barriers."""
        nbytes = lambda shapes, n_vec: sum(2 * r * c for r, c in shapes) + 4 * T * n_vec  # noqa: E731
        stages = _stages(nbytes(fixed, n_fixed_vec) + 4 * T * T, nbytes(streamed, n_streamed_vec))
        return (*[tile(*shape) for shape in fixed], *[tile(stages, *shape) for shape in streamed],
                vec(n_fixed_vec), vec(stages, n_streamed_vec), out_tile, bars,
                plgpu.Barrier(num_barriers=3 * stages))

    dq = _call(functools.partial(_dq_kernel, L=L, scale=scale),
               scratch([(T, DV), (T, DV)], [(T, T), (T, DV)], 4, 2),
               jax.ShapeDtypeStruct((BH, S, DK), F32), grid_k, interpret, "mlstm_chunk_dq_mosaic")(
        dhs, Cm, k, v, qv_dq, kv_dq)
    dk = _call(functools.partial(_key_grad_kernel, L=L, scale=scale, dk=True),
               scratch([(T, DV), (T, DV)], [(T, DV), (T, T)], 3, 3),
               jax.ShapeDtypeStruct((BH, S, DK), F32), grid_k, interpret, "mlstm_chunk_dk_mosaic")(
        v, dCm, dhs, q, kv, qv)
    dv = _call(functools.partial(_key_grad_kernel, L=L, scale=scale, dk=False),
               scratch([(T, DK), (DK, T)], [(T, DK), (T, T)], 3, 3),
               jax.ShapeDtypeStruct((BH, S, DV), F32), grid_v, interpret, "mlstm_chunk_dv_mosaic")(
        k, dCm, q, dhs, kv, qv)
    return dq, dk, dv
