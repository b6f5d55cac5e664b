"""Training-step throughput and peak memory: our JAX trainer next to the official PyTorch ``xlstm``.

Usage::

    python benchmarks/train_throughput.py                 # CPU defaults below, ~5 minutes on 2 cores
    python benchmarks/train_throughput.py --config.cases=chem_xlstm_15m:32x100 --config.steps=5

Each case ``preset:BxS`` runs in its own subprocess per implementation (so memory figures do not mix):
* ``jax``: ``bioxlstm_jax.training.make_train_step`` (causal LM loss, clipping, AdamW update) jitted,
  the preset as users run it (its mLSTM form, chunk size capped at S);
* ``torch``: the official ``xlstm.xLSTMLMModel`` with the same sizes (embedding, blocks, heads,
  projection factors, conv kernel, sLSTM blocks with the vanilla backend on CPU), cross-entropy,
  ``clip_grad_norm_`` and ``torch.optim.AdamW``. It has no RoPE: Prot-xLSTM's RoPE costs O(S D).
Reported: median step time over ``config.steps`` after 2 warm-up steps, tokens/s = B x S / time, and peak
memory: on GPU the allocator's peak (``memory_stats`` / ``max_memory_allocated``). On CPU (no
allocator statistics) two different measures, so compare them with care: for JAX, XLA's buffer plan
of the compiled step (temp + arguments + outputs - donated aliases: params, optimizer state,
activations); for torch, the largest growth of the process RSS during the warm-up steps, from before the first
(gradients, optimizer state, activations; the weights themselves are excluded). float32 on CPU,
bf16 compute on GPU (``config.dtype``). Writes ``train_throughput_<device>.json`` to the workdir
(default ``benchmarks/results``).
"""

from __future__ import annotations

import json
import os
import statistics
import time

import ml_collections
import numpy as np
from common import cli, run_worker, save_results
from ml_collections.config_dict import placeholder

CPU_CASES = "dna_xlstm_500k:8x256,chem_xlstm_15m:32x100,prot_xlstm_26m:2x1024"
GPU_CASES = "dna_xlstm_500k:64x1024,dna_xlstm_4m:8x8192,chem_xlstm_15m:256x100,prot_xlstm_26m:8x8192,prot_xlstm_102m:4x8192"


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.cases = placeholder(str)  # comma-separated preset:BxS (unset: CPU_CASES or GPU_CASES by device)
    c.steps = 5  # timed steps (median) after 2 warm-up steps
    c.dtype = placeholder(str)  # unset: float32 on CPU, bfloat16 on GPU
    c.impls = "jax,torch"
    c.form = placeholder(str)  # override the presets' mLSTM form (parallel, chunkwise)
    c.chunk_size = placeholder(int)  # override the presets' chunk size
    c.remat = "none"  # JAX: XLSTMConfig.remat
    c.worker = placeholder(str)  # internal: jax | torch, one case in this process
    return c


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _timed(step, n):
    """(median seconds per step over ``n`` steps, largest RSS growth in bytes from the RSS before the first
    step). The RSS is sampled every millisecond during 2 warm-up steps only (the first allocates the
    optimizer state; later steps repeat the same allocations): a sampling thread beside the timed steps
    slowed them on 2 cores (torch chem_xlstm_15m 2.61 -> 3.11-3.44 s/step, ours 3.26 -> 3.35 s)."""
    import threading

    base, peak, done = _rss_bytes(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes() - base)
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for _ in range(2):
        step()
    done.set()
    sampler.join()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), peak[0]


def worker_jax(preset, B, S, steps, dtype, form=None, chunk_size=None, remat="none"):
    import jax
    import jax.numpy as jnp

    from bioxlstm_jax import presets
    from bioxlstm_jax.nn import XLSTMLM
    from bioxlstm_jax.training import base_config, causal_lm_task
    from bioxlstm_jax.training.optim import make_optimizer
    from bioxlstm_jax.training.trainer import init_state, make_train_step

    cfg = presets.get(preset)
    cfg = cfg.replace(context_length=max(S, cfg.context_length), chunk_size=min(chunk_size or cfg.chunk_size, S), dtype=dtype,
                      form=form or cfg.form, remat=remat)
    model = XLSTMLM(cfg)
    task = causal_lm_task(model, None)
    opt_cfg = base_config().optimizer
    optimizer, schedule = make_optimizer(opt_cfg, 1000)
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, cfg.vocab_size, (B, S)), jnp.int32)
    batch = {"tokens": tokens}
    state = jax.jit(lambda b: init_state(task, optimizer, 0, b))(batch)
    n_params = sum(x.size for x in jax.tree.leaves(state.params))
    step_fn = jax.jit(make_train_step(task, optimizer, schedule), donate_argnums=0)
    mem = step_fn.lower(state, batch).compile().memory_analysis()
    planned = mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes
    holder = [state]

    def step():
        holder[0], m = step_fn(holder[0], batch)
        jax.block_until_ready(m["loss"])

    t, _ = _timed(step, steps)
    dev = jax.devices()[0]
    stats = dev.memory_stats() if dev.platform == "gpu" else None
    peak = stats["peak_bytes_in_use"] if stats else planned
    return {"seconds_per_step": t, "peak_memory_bytes": int(peak), "params": int(n_params), "form": cfg.form,
            "chunk_size": cfg.chunk_size}


def _official_model(preset, S):
    from xlstm import (
        FeedForwardConfig,
        mLSTMBlockConfig,
        mLSTMLayerConfig,
        sLSTMBlockConfig,
        sLSTMLayerConfig,
        xLSTMLMModel,
        xLSTMLMModelConfig,
    )

    from bioxlstm_jax import presets

    c = presets.get(preset)
    import torch

    cuda = torch.cuda.is_available()
    slstm = sLSTMBlockConfig(
        slstm=sLSTMLayerConfig(backend="cuda" if cuda else "vanilla", num_heads=c.slstm_num_heads,
                               conv1d_kernel_size=c.slstm_conv1d_kernel_size),
        feedforward=FeedForwardConfig(proj_factor=c.ffn_proj_factor, act_fn="gelu")) if c.slstm_at else None
    mlstm = mLSTMBlockConfig(mlstm=mLSTMLayerConfig(
        num_heads=c.mlstm_num_heads, proj_factor=c.mlstm_proj_factor, conv1d_kernel_size=c.conv1d_kernel_size,
        qkv_proj_blocksize=c.qkv_proj_blocksize)) if len(c.slstm_at) < c.num_blocks else None
    cfg = xLSTMLMModelConfig(mlstm_block=mlstm, slstm_block=slstm, context_length=S, num_blocks=c.num_blocks,
                             embedding_dim=c.embedding_dim, slstm_at=list(c.slstm_at), vocab_size=c.vocab_size,
                             bias=c.bias)
    return xLSTMLMModel(cfg), c.vocab_size


def worker_torch(preset, B, S, steps, dtype):
    import torch

    model, vocab = _official_model(preset, S)
    model.reset_parameters()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1)
    tokens = torch.from_numpy(np.random.default_rng(0).integers(0, vocab, (B, S))).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=dtype == "bfloat16")

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast:
            logits = model(tokens)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].float().reshape(-1, vocab), tokens[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()

    t, rss_peak = _timed(step, steps)
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else rss_peak
    return {"seconds_per_step": t, "peak_memory_bytes": int(peak), "params": int(n_params)}


def _run_worker(impl, case, steps, dtype, form=None, chunk_size=None, timeout=None, remat="none"):
    return run_worker("train_throughput.py", timeout, worker=impl, cases=case, steps=steps, dtype=dtype, form=form,
                      chunk_size=chunk_size, remat=remat)


def bench(c, workdir):
    if c.worker:
        preset, shape = c.cases.split(":")
        B, S = map(int, shape.split("x"))
        if c.worker == "jax":
            print(json.dumps(worker_jax(preset, B, S, c.steps, c.dtype, c.form, c.chunk_size, c.remat)))
        else:
            print(json.dumps(worker_torch(preset, B, S, c.steps, c.dtype)))
        return

    import jax

    dev = jax.devices()[0]
    gpu = dev.platform == "gpu"
    dtype = c.dtype or ("bfloat16" if gpu else "float32")
    cases = (c.cases or (GPU_CASES if gpu else CPU_CASES)).split(",")
    rows = []
    for case in cases:
        preset, shape = case.split(":")
        B, S = map(int, shape.split("x"))
        for impl in c.impls.split(","):
            r = {"impl": impl, "preset": preset, "B": B, "S": S,
                 **_run_worker(impl, case, c.steps, dtype, c.form, c.chunk_size, remat=c.remat)}
            if "seconds_per_step" in r:
                r["tokens_per_s"] = B * S / r["seconds_per_step"]
            rows.append(r)
            print(json.dumps(r), flush=True)

    print(f"\n{dev.device_kind}, {dtype}, median of {c.steps} steps\n")
    print("| preset | B x S | impl | params | ms/step | tokens/s | peak memory MiB | speed-up vs torch |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['preset']} | {r['B']}x{r['S']} | {r['impl']} | - | - | - | - | error: {r['error'][:60]} |")
            continue
        ref = next((x for x in rows if x["impl"] == "torch" and x["preset"] == r["preset"] and x["S"] == r["S"]
                    and "seconds_per_step" in x), None)
        speed = f"{ref['seconds_per_step'] / r['seconds_per_step']:.2f}x" if ref else "-"
        print(f"| {r['preset']} | {r['B']}x{r['S']} | {r['impl']} | {r['params'] / 1e6:.2f}M | "
              f"{1e3 * r['seconds_per_step']:.1f} | {r['tokens_per_s']:.0f} | {r['peak_memory_bytes'] / 2**20:.0f} | "
              f"{speed} |")
    out = save_results(workdir, "train_throughput", {"dtype": dtype, "steps": c.steps, "rows": rows})
    print(f"\nwrote {out}")


if __name__ == "__main__":
    cli(bench, get_config)
