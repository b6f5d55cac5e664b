"""Long-context training memory and time: one training step of a preset at S tokens, per remat policy.

Usage::

    python benchmarks/long_context.py                                   # the CPU cases below
    python benchmarks/long_context.py --config.cases=prot_xlstm_26m:16384:block,prot_xlstm_26m:16384:block:0

Each case ``preset:S:remat[:segment]`` (segment: ``XLSTMConfig.remat_segment``, default 2048; 0 =
whole blocks) runs in its own subprocess (batch 1, float32 on CPU): the training step of
``bioxlstm_jax.training`` (causal-LM loss, gradients, clipping, AdamW update), jitted with the state
donated, as ``benchmarks/train_throughput.py`` builds it. Reported per case:

* ``planned_bytes``: XLA's buffer plan of the compiled step (temp + arguments + outputs - aliases),
  and ``planned_kib_per_token``;
* ``peak_rss_bytes``: the worker's peak resident memory (``ru_maxrss``, compilation included);
* ``seconds_per_step`` (median of ``config.steps`` steps after one warm-up step; at S >= 65536 one step,
  no warm-up) and ``tokens_per_second``.

With ``config.torch_max`` = N the official PyTorch ``xlstm`` model (no RoPE, its default parallel mLSTM)
runs beside each preset at S <= N (its RSS growth over the steps; see ``train_throughput.py``).
Writes ``long_context_<device>.json`` and ``long_context_<device>.png`` (planned memory and time per
token against S) to the workdir (default ``benchmarks/results``).
"""

from __future__ import annotations

import json
import resource
import statistics
import time
from pathlib import Path

import ml_collections
import numpy as np
from common import cli, device_name, run_worker, save_results
from ml_collections.config_dict import placeholder
from train_throughput import worker_torch

CPU_CASES = ",".join(["prot_xlstm_26m:1024:none", "prot_xlstm_26m:1024:block", "prot_xlstm_26m:1024:block_save_dots",
                      "prot_xlstm_26m:4096:none", "prot_xlstm_26m:4096:block", "prot_xlstm_26m:16384:block:0",
                      "prot_xlstm_26m:16384:block", "prot_xlstm_26m:32768:block", "prot_xlstm_26m:65536:block",
                      "prot_xlstm_26m:131072:block", "dna_xlstm_4m:4096:none", "dna_xlstm_4m:4096:block",
                      "dna_xlstm_4m:32768:block"])
ONE_STEP_FROM = 65536


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.cases = CPU_CASES  # comma-separated preset:S:remat[:segment]
    c.steps = 1  # timed steps after one warm-up (S < 65536)
    c.torch_max = 4096  # run the official model at S <= this
    c.timeout = 3600  # seconds per case
    c.worker = placeholder(str)  # internal: jax | torch, one case in this process
    return c


def worker(preset: str, S: int, remat: str, segment: int, steps: int) -> dict:
    import jax
    import jax.numpy as jnp

    from bioxlstm_jax import presets
    from bioxlstm_jax.nn import XLSTMLM
    from bioxlstm_jax.training import base_config, causal_lm_task
    from bioxlstm_jax.training.optim import make_optimizer
    from bioxlstm_jax.training.trainer import init_state, make_train_step

    cfg = presets.get(preset)
    cfg = cfg.replace(context_length=max(S, cfg.context_length), chunk_size=min(cfg.chunk_size, S), remat=remat,
                      remat_segment=segment)
    task = causal_lm_task(XLSTMLM(cfg), None)
    optimizer, schedule = make_optimizer(base_config().optimizer, 1000)
    batch = {"tokens": jnp.asarray(np.random.default_rng(0).integers(0, cfg.vocab_size, (1, S)), jnp.int32)}
    state = jax.jit(lambda b: init_state(task, optimizer, 0, b))(batch)
    t0 = time.perf_counter()
    step_fn = jax.jit(make_train_step(task, optimizer, schedule), donate_argnums=0).lower(state, batch).compile()
    compile_s = time.perf_counter() - t0
    mem = step_fn.memory_analysis()
    planned = mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes
    times = []
    n = 1 if S >= ONE_STEP_FROM else steps + 1
    for k in range(n):
        t0 = time.perf_counter()
        state, metrics = step_fn(state, batch)
        loss = float(jax.block_until_ready(metrics["loss"]))
        if n == 1 or k:
            times.append(time.perf_counter() - t0)
    t = statistics.median(times)
    return {"planned_bytes": int(planned), "planned_kib_per_token": planned / S / 1024,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "seconds_per_step": t, "tokens_per_second": S / t, "compile_seconds": compile_s,
            "timed_steps": len(times), "loss": loss, "chunk_size": cfg.chunk_size}


def _plot(rows, path):
    from matplotlib.figure import Figure  # no pyplot: never touches the caller's backend

    from bioxlstm_jax.io import atomic_path

    fig = Figure(figsize=(11, 4))
    a, b = fig.subplots(1, 2)
    series = sorted({(r["impl"], r["preset"], r["remat"]) for r in rows if "error" not in r})
    for impl, preset, remat in series:
        pts = sorted((r["S"], r) for r in rows if (r["impl"], r["preset"], r["remat"]) == (impl, preset, remat)
                     and "error" not in r)
        S = [s for s, _ in pts]
        label = f"{preset} {impl}" + (f" remat={remat}" if impl == "jax" else "")
        mem = [r["planned_kib_per_token"] if impl == "jax" else r["peak_memory_bytes"] / s / 1024 for s, r in pts]
        a.plot(S, mem, "o-", label=label)
        b.plot(S, [1e6 * r["seconds_per_step"] / s for s, r in pts], "o-", label=label)
    for ax, title in ((a, "memory per token (KiB; JAX: buffer plan, torch: RSS growth)"),
                      (b, "time per token (us)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("S (tokens)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    a.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)


def bench(c, workdir):
    if c.worker:
        preset, S, remat, segment = (c.cases + ":2048").split(":")[:4]
        fn = worker(preset, int(S), remat, int(segment), c.steps) if c.worker == "jax" else worker_torch(
            preset, 1, int(S), c.steps, "float32")
        print(json.dumps(fn))
        return

    rows = []
    torch_done = set()
    print(f"{'preset':16s} {'impl':5s} {'S':>7s} {'remat':16s} {'plan GiB':>9s} {'KiB/tok':>8s} {'RSS GiB':>8s} "
          f"{'s/step':>8s} {'tok/s':>8s}")
    for case in c.cases.split(","):
        preset, S, remat, segment = (case + ":2048").split(":")[:4]
        if remat != "none":
            remat = f"{remat}:{segment}"
        todo = [("jax", remat)]
        if int(S) <= c.torch_max and (preset, S) not in torch_done:
            todo.append(("torch", "-"))
            torch_done.add((preset, S))
        for impl, policy in todo:
            r = run_worker("long_context.py", c.timeout, worker=impl, cases=case, steps=c.steps)
            r.update(preset=preset, S=int(S), remat=policy, impl=impl)
            rows.append(r)
            if "error" in r:
                print(f"{preset:16s} {impl:5s} {S:>7s} {policy:16s} {r['error']}")
            else:
                plan = r.get("planned_bytes")
                rss = r.get("peak_rss_bytes", r.get("peak_memory_bytes"))
                print(f"{preset:16s} {impl:5s} {S:>7s} {policy:16s} "
                      f"{(plan or 0) / 2**30:9.2f} {(r.get('planned_kib_per_token') or 0):8.0f} {rss / 2**30:8.2f} "
                      f"{r['seconds_per_step']:8.2f} {int(S) / r['seconds_per_step']:8.0f}", flush=True)
            save_results(workdir, "long_context", {"benchmark": "long_context", "batch": 1, "dtype": "float32",
                                                   "rows": rows})
    _plot(rows, Path(workdir) / f"long_context_{device_name()}.png")


if __name__ == "__main__":
    cli(bench, get_config)
