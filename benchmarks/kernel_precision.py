"""How accurate the chunkwise mLSTM is in 16-bit, row by row, against float64: the Mosaic GPU and Triton
kernels and the XLA form on the same bfloat16 inputs.

Usage::

    python benchmarks/kernel_precision.py                       # CPU: kernels interpreted
    python benchmarks/kernel_precision.py --config.seq_len=8192 # on a GPU: compiled

The reference is the parallel form in float64 (numpy) on the same (rounded) inputs. For each output row
``h_t`` (per head): its relative error ``|h_t - h64_t| / |h64_t|``, and the same after the per-head
LayerNorm the models apply (what a model sees). The rows are grouped by ``|q_t . n_t| / N_t``, how much
of the normalizer ``N_t = max(|q_t . n_t|, exp(-m_t))`` the query's normalizer product supplies (small:
the numerator is a sum with cancellation, the case where a 16-bit numerator loses accuracy): the worst
1 % of rows by that ratio against all rows. Gates: the regime of the references (f ~ N(3, 1), i ~ N(0, 1))
and strong forgetting with large input gates. Writes ``kernel_precision_<device>.json``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from common import cli, save_results

from bioxlstm_jax import ops

GATES = {"normal": (3.0, 1.0, 0.0, 1.0), "forget": (-2.0, 1.0, 4.0, 3.0)}  # f mean/std, i mean/std


def get_config():
    c = ml_collections.ConfigDict()
    c.seq_len = 1024
    c.heads = 2
    c.dhqk = 128
    c.dhv = 256
    c.chunk = 64
    c.impls = "pallas_mosaic,pallas_triton,xla"
    c.gates = "normal,forget"
    c.seed = 0
    return c


def _inputs(c, gates):
    f_mean, f_std, i_mean, i_std = GATES[gates]
    rng = np.random.default_rng(c.seed)
    shape = (1, c.heads, c.seq_len)
    q, k = (jnp.asarray(rng.normal(size=(*shape, c.dhqk)), jnp.bfloat16) for _ in range(2))
    v = jnp.asarray(rng.normal(size=(*shape, c.dhv)), jnp.bfloat16)
    i = jnp.asarray(rng.normal(i_mean, i_std, size=shape), jnp.float32)
    f = jnp.asarray(rng.normal(f_mean, f_std, size=shape), jnp.float32)
    return q, k, v, i, f


def _reference(q, k, v, i, f):
    """The parallel form in float64 (``docs/ops.md``, "The math"): h (B, NH, S, DHV) and each row's
    normalizer share ``|q_t . n_t| / N_t``."""
    q, k, v, i, f = (np.asarray(x, np.float64) for x in (q, k, v, i, f))
    S = q.shape[2]
    cum = np.cumsum(-np.logaddexp(0.0, -f), axis=-1)  # log sigmoid
    log_d = cum[..., :, None] - cum[..., None, :] + i[..., None, :]
    log_d = np.where(np.tril(np.ones((S, S), bool)), log_d, -np.inf)
    m = log_d.max(-1)
    scores = q @ np.swapaxes(k, -1, -2) * q.shape[-1] ** -0.5 * np.exp(log_d - m[..., None])
    den = scores.sum(-1)
    N = np.maximum(np.abs(den), np.exp(-m))
    return scores @ v / (N + 1e-6)[..., None], np.abs(den) / N


def _layernorm(h):
    h = h - h.mean(-1, keepdims=True)
    return h / np.sqrt((h**2).mean(-1, keepdims=True) + 1e-12)


def _row_errors(h, ref):
    return np.linalg.norm(h - ref, axis=-1) / np.linalg.norm(ref, axis=-1)


def kernel_precision(c, workdir):
    impls = [x for x in c.impls.split(",") if x]
    results = []
    for gates in [g for g in c.gates.split(",") if g]:
        q, k, v, i, f = _inputs(c, gates)
        ref, share = _reference(q, k, v, i, f)
        share = share.reshape(-1)
        worst = share <= np.quantile(share, 0.01)
        for impl in impls:
            run = jax.jit(lambda *a, impl=impl: ops.mlstm_chunkwise(*a, chunk_size=c.chunk, kernel=impl))
            h = np.asarray(run(q, k, v, i, f).astype(jnp.float32), np.float64)
            row = _row_errors(h, ref).reshape(-1)
            normed = _row_errors(_layernorm(h), _layernorm(ref)).reshape(-1)
            entry = dict(impl=impl, gates=gates, rows=int(row.size),
                         smallest_share=float(share.min()), share_1pct=float(np.quantile(share, 0.01)),
                         all_rows={"median": float(np.median(row)), "p99": float(np.quantile(row, 0.99)),
                                   "max": float(row.max()), "after_layernorm_max": float(normed.max())},
                         low_share_rows={"median": float(np.median(row[worst])), "max": float(row[worst].max()),
                                         "after_layernorm_max": float(normed[worst].max())})
            results.append(entry)
            print(f"{gates:7} {impl:14} rows: median {entry['all_rows']['median']:.2e} max {row.max():.2e} "
                  f"(after LN {normed.max():.2e}); 1 % lowest |q.n|/N (<= {entry['share_1pct']:.2e}): median "
                  f"{entry['low_share_rows']['median']:.2e} max {row[worst].max():.2e} "
                  f"(after LN {normed[worst].max():.2e})", flush=True)
    shape = dict(B=1, NH=c.heads, S=c.seq_len, DHQK=c.dhqk, DHV=c.dhv, chunk=c.chunk, dtype="bfloat16")
    path = save_results(workdir, "kernel_precision", {"shape": shape, "reference": "parallel form, float64 (numpy)",
                                                      "results": results}, extra_versions=())
    print(f"wrote {path}")
    return {}


if __name__ == "__main__":
    cli(kernel_precision, get_config)
