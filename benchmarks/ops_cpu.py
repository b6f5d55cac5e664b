"""CPU benchmark of the mLSTM forms: ours (JAX, jitted) next to the official PyTorch functions.

Usage (from the repository root)::

    python benchmarks/ops_cpu.py                      # S in 256, 1k, 4k, 16k; ~3 minutes on 2 cores
    python benchmarks/ops_cpu.py --seq-lens 256 1024 --repeats 3

Measures forward and forward+backward wall time (median over ``--repeats`` after one warm-up/compile
call) of the parallel, chunkwise and recurrent forms at B=1, NH=4, DHQK=DHV=64, float32, and the
official ``xlstm`` PyTorch functions (``parallel_stabilized_simple``, ``chunkwise_simple``, a Python loop
of ``recurrent_step_stabilized_simple``) when ``torch`` and ``xlstm`` are installed (the test extra).
The quadratic parallel form is skipped above ``--max-parallel-len`` (its S x S matrices exceed memory).
Prints a table and writes ``benchmarks/results/ops_cpu.json`` (device, versions, date, every timing).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from bioxlstm_jax.ops import mlstm_chunkwise, mlstm_parallel, mlstm_recurrent

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "ops_cpu.json")


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
    from xlstm.blocks.mlstm.backends import chunkwise_simple, parallel_stabilized_simple, recurrent_step_stabilized_simple

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


def _versions(with_torch):
    import flax

    versions = {"python": platform.python_version(), "jax": jax.__version__, "jaxlib": jax.lib.__version__,
                "flax": flax.__version__, "numpy": np.__version__}
    if with_torch:
        import torch
        import xlstm

        versions.update(torch=torch.__version__, xlstm=xlstm.__version__)
    return versions


def _device():
    d = jax.devices()[0]
    return {"platform": d.platform, "device_kind": d.device_kind, "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "host": platform.node()}


def _write_atomic(path, payload):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(payload, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seq-lens", type=int, nargs="+", default=[256, 1024, 4096, 16384])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--chunk-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-parallel-len", type=int, default=4096, help="skip the S^2 parallel form above this S")
    parser.add_argument("--max-torch-recurrent-len", type=int, default=4096,
                        help="skip the official Python-loop recurrent form above this S (minutes per call)")
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args(argv)

    try:
        import torch  # noqa: F401
        import xlstm  # noqa: F401

        with_torch = True
    except ImportError:
        with_torch = False
        print("torch / xlstm not installed: JAX only (install the test extra to compare with the official code)")

    impls = [("jax", bench_jax)] + ([("torch", bench_torch)] if with_torch else [])
    rows = []
    for S in args.seq_lens:
        data, cot = _inputs(S, args.batch, args.heads, args.head_dim)
        for form in ("parallel", "chunkwise", "recurrent"):
            for impl, bench in impls:
                skip = None
                if form == "parallel" and S > args.max_parallel_len:
                    skip = f"S > {args.max_parallel_len} (S^2 memory)"
                if impl == "torch" and form == "recurrent" and S > args.max_torch_recurrent_len:
                    skip = f"S > {args.max_torch_recurrent_len} (Python loop)"
                if impl == "torch" and form == "chunkwise" and S % args.chunk_size:
                    skip = "S % chunk_size != 0"
                row = {"impl": impl, "form": form, "S": S, "fwd_ms": None, "fwd_bwd_ms": None, "skipped": skip}
                if skip is None:
                    repeats = 1 if form == "recurrent" and impl == "torch" else args.repeats
                    row["fwd_ms"], row["fwd_bwd_ms"] = bench(form, data, cot, args.chunk_size, repeats)
                rows.append(row)
                fmt = lambda x: "-" if x is None else f"{x:10.2f}"  # noqa: E731
                print(f"S={S:6d} {impl:5s} {form:9s} fwd {fmt(row['fwd_ms'])} ms   fwd+bwd {fmt(row['fwd_bwd_ms'])} ms"
                      + (f"   (skipped: {skip})" if skip else ""), flush=True)

    print()
    header = "| S | form | " + " | ".join(f"{impl} fwd ms | {impl} fwd+bwd ms" for impl, _ in impls) + " |"
    print(header)
    print("|" + "---|" * (2 + 2 * len(impls)))
    for S in args.seq_lens:
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
        "device": _device(),
        "versions": _versions(with_torch),
        "config": {"batch": args.batch, "heads": args.heads, "dhqk": args.head_dim, "dhv": args.head_dim,
                   "chunk_size": args.chunk_size, "dtype": "float32", "repeats": args.repeats,
                   "statistic": "median wall time after one warm-up call", "command": " ".join(sys.argv)},
        "results": rows,
    }
    _write_atomic(args.out, payload)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
