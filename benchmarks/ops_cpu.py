"""CPU benchmark of the mLSTM forms: ours (JAX, jitted) next to the official PyTorch functions.

Usage::

    python benchmarks/ops_cpu.py                      # S in 256, 1k, 4k, 16k; ~3 minutes on 2 cores
    python benchmarks/ops_cpu.py --config.seq_lens=256,1024 --config.repeats=3

Measures forward and forward+backward wall time (median over ``config.repeats`` after one warm-up/compile
call) of the parallel, chunkwise and recurrent forms at B=1, NH=4, DHQK=DHV=64, float32, and the
official ``xlstm`` PyTorch functions (``parallel_stabilized_simple``, ``chunkwise_simple``, a Python loop
of ``recurrent_step_stabilized_simple``) when ``torch`` and ``xlstm`` are installed (the test extra).
The quadratic parallel form is skipped above ``config.max_parallel_len`` (its S x S matrices exceed
memory). Prints a table and writes ``<config.name>.json`` to the workdir (default ``benchmarks/results``:
``ops_cpu.json``; device, versions, date, every timing).
"""

from __future__ import annotations

import datetime
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from common import cli, device_info, versions

from bioxlstm_jax.io import write_json
from bioxlstm_jax.ops import mlstm_chunkwise, mlstm_parallel, mlstm_recurrent


def _inputs(S, B, NH, D, seed=0):
    rng = np.random.default_rng(seed)
    q, k, v = (rng.normal(size=(B, NH, S, D)).astype(np.float32) for _ in range(3))
    i = rng.normal(size=(B, NH, S)).astype(np.float32)
    f = (rng.normal(size=(B, NH, S)) + 3.0).astype(np.float32)
    cot = rng.normal(size=(B, NH, S, D)).astype(np.float32)
    return (q, k, v, i, f), cot


def _median_time(fn, repeats):
    fn()  # warm-up (and compilation for JAX)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def _jax_fns(form, chunk_size):
    if form == "parallel":
        fwd = mlstm_parallel
    elif form == "chunkwise":
        fwd = lambda *a: mlstm_chunkwise(*a, chunk_size=chunk_size)  # noqa: E731
    else:
        fwd = lambda *a: mlstm_recurrent(*a)[0]  # noqa: E731
    fwd = jax.jit(fwd)
    fwd_bwd = jax.jit(jax.grad(lambda args, cot: jnp.sum(fwd(*args) * cot)))
    return fwd, fwd_bwd


def bench_jax(form, args, cot, chunk_size, repeats):
    fwd, fwd_bwd = _jax_fns(form, chunk_size)
    args = tuple(jnp.asarray(x) for x in args)
    cot = jnp.asarray(cot)
    t_fwd = _median_time(lambda: jax.block_until_ready(fwd(*args)), repeats)
    t_bwd = _median_time(lambda: jax.block_until_ready(fwd_bwd(args, cot)), repeats)
    return t_fwd, t_bwd


def _torch_fn(form, chunk_size):
    import torch
    from xlstm.blocks.mlstm.backends import (
        chunkwise_simple,
        parallel_stabilized_simple,
        recurrent_step_stabilized_simple,
    )

    def run(q, k, v, i, f):
        if form == "parallel":
            return parallel_stabilized_simple(q, k, v, i[..., None], f[..., None])
        if form == "chunkwise":
            return chunkwise_simple(q, k, v, i, f, chunk_size=chunk_size)
        B, NH, S, D = q.shape
        C, n, m = q.new_zeros(B, NH, D, D), q.new_zeros(B, NH, D, 1), q.new_zeros(B, NH, 1, 1)
        hs = []
        for t in range(S):
            h, (C, n, m) = recurrent_step_stabilized_simple(
                C, n, m, *(x[:, :, t : t + 1].clone() for x in (q, k, v)),  # it squeezes in place
                i[:, :, t, None, None], f[:, :, t, None, None],
            )
            hs.append(h)
        return torch.cat(hs, dim=2)

    return run


def bench_torch(form, args, cot, chunk_size, repeats):
    import torch

    run = _torch_fn(form, chunk_size)
    targs = [torch.from_numpy(x) for x in args]
    tcot = torch.from_numpy(cot)

    def fwd():
        with torch.no_grad():
            run(*targs)

    def fwd_bwd():
        leaves = [x.clone().requires_grad_(True) for x in targs]
        (run(*leaves) * tcot).sum().backward()

    return _median_time(fwd, repeats), _median_time(fwd_bwd, repeats)


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seq_lens = (256, 1024, 4096, 16384)
    c.batch = 1
    c.heads = 4
    c.head_dim = 64
    c.chunk_size = 64
    c.repeats = 5
    c.max_parallel_len = 4096  # skip the S^2 parallel form above this S
    c.max_torch_recurrent_len = 4096  # skip the official Python-loop recurrent form above this S (minutes per call)
    c.name = "ops_cpu"  # result file name (without .json)
    return c


def bench(c, workdir):
    try:
        import torch  # noqa: F401
        import xlstm  # noqa: F401

        with_torch = True
    except ImportError:
        with_torch = False
        print("torch / xlstm not installed: JAX only (install the test extra to compare with the official code)")

    impls = [("jax", bench_jax)] + ([("torch", bench_torch)] if with_torch else [])
    rows = []
    for S in c.seq_lens:
        data, cot = _inputs(S, c.batch, c.heads, c.head_dim)
        for form in ("parallel", "chunkwise", "recurrent"):
            for impl, bench in impls:
                skip = None
                if form == "parallel" and S > c.max_parallel_len:
                    skip = f"S > {c.max_parallel_len} (S^2 memory)"
                if impl == "torch" and form == "recurrent" and S > c.max_torch_recurrent_len:
                    skip = f"S > {c.max_torch_recurrent_len} (Python loop)"
                if impl == "torch" and form == "chunkwise" and S % c.chunk_size:
                    skip = "S % chunk_size != 0"
                row = {"impl": impl, "form": form, "S": S, "fwd_ms": None, "fwd_bwd_ms": None, "skipped": skip}
                if skip is None:
                    repeats = 1 if form == "recurrent" and impl == "torch" else c.repeats
                    row["fwd_ms"], row["fwd_bwd_ms"] = bench(form, data, cot, c.chunk_size, repeats)
                rows.append(row)
                fmt = lambda x: "-" if x is None else f"{x:10.2f}"  # noqa: E731
                print(f"S={S:6d} {impl:5s} {form:9s} fwd {fmt(row['fwd_ms'])} ms   fwd+bwd {fmt(row['fwd_bwd_ms'])} ms"
                      + (f"   (skipped: {skip})" if skip else ""), flush=True)

    print()
    header = "| S | form | " + " | ".join(f"{impl} fwd ms | {impl} fwd+bwd ms" for impl, _ in impls) + " |"
    print(header)
    print("|" + "---|" * (2 + 2 * len(impls)))
    for S in c.seq_lens:
        for form in ("parallel", "chunkwise", "recurrent"):
            cells = []
            for impl, _ in impls:
                r = next(r for r in rows if r["impl"] == impl and r["form"] == form and r["S"] == S)
                cells += ["-" if r["fwd_ms"] is None else f"{r['fwd_ms']:.2f}",
                          "-" if r["fwd_bwd_ms"] is None else f"{r['fwd_bwd_ms']:.2f}"]
            print(f"| {S} | {form} | " + " | ".join(cells) + " |")

    payload = {
        "benchmark": "ops_cpu",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device_info(),
        "versions": versions(*(("torch", "xlstm") if with_torch else ())),
        "config": {"batch": c.batch, "heads": c.heads, "dhqk": c.head_dim, "dhv": c.head_dim,
                   "chunk_size": c.chunk_size, "dtype": "float32", "repeats": c.repeats,
                   "statistic": "median wall time after one warm-up call", "command": " ".join(sys.argv)},
        "results": rows,
    }
    out = write_json(Path(workdir) / f"{c.name}.json", payload)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    cli(bench, get_config)
