"""Chunkwise mLSTM kernel benchmark: ours (Pallas Mosaic GPU and Triton, XLA) next to TFLA,
jax-linear-attention and cuDNN flash attention.

Usage::

    python benchmarks/mlstm_kernel.py                      # on a GPU: the full sweep below
    python benchmarks/mlstm_kernel.py --config.seq_lens=256 --config.tokens=512 --config.heads=2 \\
        --config.dhqk=32 --config.dhv=64 --config.impls=xla --config.dtype=float32   # a CPU smoke run

The configuration is TFLA's "constant tokens" sweep: 65,536 tokens per step (``B = tokens / S``) for S
from 2k to 64k, NH = 16, DHQK = 128, DHV = 256, bf16 inputs. Implementations (each in its own
subprocess, so one's memory never crowds another's):
* ``pallas_mosaic``, ``pallas_triton``: ``bioxlstm_jax.ops.mlstm_chunkwise(kernel=...)``, the Pallas
  kernels compiled by Mosaic GPU (Hopper) or Triton (interpreted off GPU: not timed);
* ``xla``: ``bioxlstm_jax.ops.mlstm_chunkwise(kernel="xla")``;
* ``tfla``: NX-AI ``mlstm_kernels`` ``chunkwise--triton_xl_chunk`` through PyTorch on the same GPU;
* ``jla``: jax-linear-attention 0.1.0's Mosaic GPU mLSTM (``jla.ops.mosaic_gpu.mlstm``; Hopper; its
  chunk is fixed at 64; inputs (B, S, NH, D), log forget gates);
* ``cudnn``: ``jax.nn.dot_product_attention(implementation="cudnn")``, causal, same tokens, with
  NH = 32 heads of 128 (the same model width as TFLA's attention baseline).
fw = forward only; fwbw = forward + backward of ``sum(h * dh)`` with a fixed random ``dh``. Median of
``config.reps`` timed runs after 3 warm-up runs.

FLOPs: matmul FLOPs of the chunkwise algorithm at chunk L, causal halves counted, recomputation not
counted (the same count for any chunkwise implementation at the same L), per head and token:
fw ``4 DHQK DHV + L (DHQK + DHV)``; bw ``8 DHQK DHV + 3 L (DHQK + DHV)``. Attention: fw
``2 S DH`` per head and token (causal half of ``4 S DH``), bw 2.5x fw. The peak is a measured
8192^3 bf16 matmul on the same device. Writes ``mlstm_kernel_<device>.json`` to the workdir (default
``benchmarks/results``).
"""

from __future__ import annotations

import datetime
import json
import statistics
import time
from pathlib import Path

import ml_collections
from common import cli, device_info, device_name, run_worker, versions
from ml_collections.config_dict import placeholder

IMPLS = ("pallas_mosaic", "pallas_triton", "xla", "tfla", "jla", "cudnn")
ATTENTION_HEADS = (32, 128)  # heads, head dim of the attention baseline (TFLA's: model width 4096)


def flops(impl: str, tokens: int, S: int, NH: int, DK: int, DV: int, L: int) -> tuple[float, float]:
    """(forward, forward + backward) FLOPs of one step."""
    if impl == "cudnn":
        heads, dh = ATTENTION_HEADS
        fw = tokens * heads * 2.0 * S * dh  # QK^T and PV: 2 * 2 S dh per head and token, causal half
        return fw, fw * 3.5
    fw = tokens * NH * (4.0 * DK * DV + L * (DK + DV))
    bw = tokens * NH * (8.0 * DK * DV + 3.0 * L * (DK + DV))
    return fw, fw + bw


# ----------------------------------------------------------------------------------------------- workers


def _jax_timer(fn, args, reps):
    import jax

    out = fn(*args)
    jax.block_until_ready(out)
    for _ in range(2):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def _worker_jax(impl, S, a):
    import jax
    import jax.numpy as jnp

    B = a.tokens // S
    dtype = jnp.dtype(a.dtype)
    keys = jax.random.split(jax.random.key(0), 6)
    if impl == "peak":
        x = jax.random.normal(keys[0], (8192, 8192), jnp.bfloat16)
        ms = _jax_timer(jax.jit(lambda x: x @ x), (x,), a.reps)
        return {"tflops": 2 * 8192**3 / ms / 1e9}
    if impl == "cudnn":
        shape = (B, S, *ATTENTION_HEADS)
        q, k, v, dh = (jax.random.normal(kk, shape, dtype) for kk in keys[:4])
        fw = lambda q, k, v: jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="cudnn")  # noqa: E731
        args = (q, k, v)
    else:
        from bioxlstm_jax import ops

        q, k = (jax.random.normal(kk, (B, a.heads, S, a.dhqk), dtype) for kk in keys[:2])
        v, dh = (jax.random.normal(kk, (B, a.heads, S, a.dhv), dtype) for kk in keys[2:4])
        i = jax.random.normal(keys[4], (B, a.heads, S), jnp.float32)
        f = jax.random.normal(keys[5], (B, a.heads, S), jnp.float32) + 3.0
        if impl == "jla":
            from jla.ops.mosaic_gpu.mlstm import mlstm as jla_mlstm

            def fw(q, k, v, i, f):
                h, _ = jla_mlstm(*(jnp.swapaxes(x, 1, 2) for x in (q, k, v)), jnp.swapaxes(jax.nn.log_sigmoid(f), 1, 2),
                                 jnp.swapaxes(i, 1, 2))
                return jnp.swapaxes(h, 1, 2)
        else:
            fw = lambda q, k, v, i, f: ops.mlstm_chunkwise(q, k, v, i, f, chunk_size=a.chunk, kernel=impl)  # noqa: E731
        args = (q, k, v, i, f)
    loss = lambda *x: jnp.sum(fw(*x).astype(jnp.float32) * dh.astype(jnp.float32))  # noqa: E731
    fwbw = jax.grad(loss, argnums=tuple(range(len(args))))
    return {"fw_ms": _jax_timer(jax.jit(fw), args, a.reps), "fwbw_ms": _jax_timer(jax.jit(fwbw), args, a.reps)}


def _worker_tfla(S, a):
    import torch
    from mlstm_kernels.torch.chunkwise import mlstm_chunkwise__xl_chunk as tfla

    B = a.tokens // S
    dtype = getattr(torch, a.dtype)
    g = torch.Generator(device="cuda").manual_seed(0)
    rnd = lambda *s, dt=dtype: torch.randn(*s, generator=g, device="cuda", dtype=dt)  # noqa: E731
    q, k = rnd(B, a.heads, S, a.dhqk), rnd(B, a.heads, S, a.dhqk)
    v, dh = rnd(B, a.heads, S, a.dhv), rnd(B, a.heads, S, a.dhv)
    i, f = rnd(B, a.heads, S, dt=torch.float32), rnd(B, a.heads, S, dt=torch.float32) + 3.0

    def timed(step):
        for _ in range(3):
            step()
        torch.cuda.synchronize()
        times = []
        for _ in range(a.reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        return statistics.median(times)

    def fw():
        with torch.no_grad():
            tfla(q, k, v, i, f, chunk_size=a.chunk)

    leaves = [x.detach().requires_grad_(True) for x in (q, k, v, i, f)]

    def fwbw():
        for x in leaves:
            x.grad = None
        tfla(*leaves, chunk_size=a.chunk).backward(dh)

    return {"fw_ms": timed(fw), "fwbw_ms": timed(fwbw)}


def _worker_main(impl, S, a):
    try:
        result = _worker_tfla(S, a) if impl == "tfla" else _worker_jax(impl, S, a)
    except Exception as err:  # noqa: BLE001 -- a failed implementation is reported, not fatal
        result = {"error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:300]}
    print(json.dumps(result), flush=True)  # the last line: read by common.run_worker


# ----------------------------------------------------------------------------------------------- driver


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seq_lens = (2048, 4096, 8192, 16384, 32768, 65536)
    c.tokens = 65536  # tokens per step (B = tokens / S)
    c.heads = 16
    c.dhqk = 128
    c.dhv = 256
    c.dtype = "bfloat16"  # bfloat16 | float16 | float32
    c.chunk = 128  # chunk size of ours and TFLA's (TFLA's default: 128)
    c.impls = placeholder(str)  # comma list of IMPLS (unset: all on GPU, xla on CPU)
    c.reps = 10
    c.timeout = 900  # seconds per implementation and length
    c.worker = placeholder(str)  # internal: the implementation this process times
    c.worker_seq = placeholder(int)  # internal: its sequence length
    return c


def bench(a, workdir):
    if a.worker:
        return _worker_main(a.worker, a.worker_seq, a)

    info = device_info()
    platform_name, device = info["platform"], info["device_kind"]
    on_gpu = platform_name == "gpu"
    impls = a.impls.split(",") if a.impls else (list(IMPLS) if on_gpu else ["xla"])
    unknown = sorted(set(impls) - set(IMPLS))
    if unknown:
        raise ValueError(f"--config.impls: unknown {unknown}; known: {', '.join(IMPLS)}")
    seq_lens = list(a.seq_lens)
    if any(a.tokens % S for S in seq_lens):
        raise ValueError(f"--config.tokens={a.tokens} must be a multiple of every sequence length {seq_lens}")
    shape = dict(tokens=a.tokens, heads=a.heads, dhqk=a.dhqk, dhv=a.dhv, dtype=a.dtype, chunk=a.chunk, reps=a.reps)

    def _run_worker(impl, S):
        return run_worker("mlstm_kernel.py", a.timeout, worker=impl, worker_seq=S, **shape)

    peak = _run_worker("peak", seq_lens[0]).get("tflops") if on_gpu else None

    rows = []
    print(f"{device}: {a.tokens} tokens/step, NH={a.heads}, DHQK={a.dhqk}, DHV={a.dhv}, {a.dtype}, chunk {a.chunk}"
          + (f", measured bf16 matmul peak {peak:.0f} TFLOP/s" if peak else ""))
    header = f"{'impl':>13} {'S':>6} {'B':>4} {'fw ms':>9} {'fwbw ms':>9} {'fw TF/s':>8} {'fwbw TF/s':>9} {'fwbw %peak':>10}"
    print(header)
    for S in seq_lens:
        for impl in impls:
            if impl.startswith("pallas") and not on_gpu:
                result = {"error": "Pallas runs interpreted off GPU; not timed"}
            else:
                result = _run_worker(impl, S)
            fw_flops, fwbw_flops = flops(impl, a.tokens, S, a.heads, a.dhqk, a.dhv, a.chunk)
            row = {"impl": impl, "S": S, "B": a.tokens // S, **result, "fw_flops": fw_flops, "fwbw_flops": fwbw_flops}
            if "fw_ms" in result:
                row["fw_tflops"] = fw_flops / result["fw_ms"] / 1e9
                row["fwbw_tflops"] = fwbw_flops / result["fwbw_ms"] / 1e9
                row["fwbw_frac_peak"] = row["fwbw_tflops"] / peak if peak else None
                frac = f"{100 * row['fwbw_frac_peak']:.1f}%" if peak else "-"
                print(f"{impl:>13} {S:>6} {a.tokens // S:>4} {result['fw_ms']:>9.2f} {result['fwbw_ms']:>9.2f} "
                      f"{row['fw_tflops']:>8.1f} {row['fwbw_tflops']:>9.1f} {frac:>10}", flush=True)
            else:
                print(f"{impl:>13} {S:>6} {a.tokens // S:>4}  {result['error']}", flush=True)
            rows.append(row)

    from bioxlstm_jax.io import write_json

    record = {
        "benchmark": "mlstm_kernel", "device": device, "platform": platform_name,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions("torch", "triton", "mlstm_kernels", "jla"),
        "config": {k: v for k, v in a.to_dict().items() if not k.startswith("worker")},
        "bf16_matmul_peak_tflops": peak, "results": rows,
    }
    out = write_json(Path(workdir) / f"mlstm_kernel_{device_name()}.json", record)
    print(f"wrote {out}")


if __name__ == "__main__":
    cli(bench, get_config)
