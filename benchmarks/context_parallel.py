"""Context parallelism: a training step with its sequence split over ``context`` devices.

Usage::

    python benchmarks/context_parallel.py                      # the CPU cases below (8 host devices)
    python benchmarks/context_parallel.py --config.cases=8192:1,8192:8 --config.fit=""

Each case ``S:context[:plan]`` runs in its own subprocess with 8 host CPU devices: the training step of
``bioxlstm_jax.training`` (causal-LM loss, gradients, clipping, AdamW) for ``config.preset`` (remat
``block``, segment 2048, batch 1, float32) on a ``make_mesh(data=1, context=context)`` mesh of the first
``context`` devices, compiled under ``jax.set_mesh``. Reported per case:

* ``planned_bytes_per_device``: XLA's buffer plan of the compiled per-device program (temp + arguments +
  outputs - aliases);
* ``seconds_per_step``: one step after compilation (``:plan`` cases: compile only). On this CPU machine
  the host devices share its cores, so this is the work of a split step, not a speed-up;
* ``summary_bytes_per_block_pass``: what each device receives per mLSTM block pass, forward or
  backward (the parts' state summaries, ``B x context x NH x (DHQK x DHV + DHQK + 2)`` float32), and
  ``collectives``: the collective operations of the compiled program text (kind, result shape, count
  in the text; one inside a loop runs once per iteration).

``config.fit`` names two lengths; from the context-8 plans at both, a line ``a + b x S`` per device
gives the longest S whose plan fits in 80 GB per device (on paper: this CPU float32 plan, not a GPU
measurement). Writes ``context_parallel_<device>.json`` to the workdir (default ``benchmarks/results``).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter

import ml_collections
from common import cli, run_worker, save_results
from ml_collections.config_dict import placeholder

CPU_CASES = "131072:1,131072:2,131072:4,131072:8,65536:8:plan,65536:1:plan"
GPU_BYTES = 80e9  # one 80 GB GPU (H100 / A100 80GB)


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.preset = "prot_xlstm_26m"
    c.cases = CPU_CASES  # comma-separated S:context[:plan]
    c.fit = "65536,131072"  # two lengths with context-8 and context-1 plans ("" = no fit)
    c.timeout = 3600  # seconds per case
    c.worker = placeholder(str)  # internal: one case in this process
    return c


def worker(preset: str, S: int, context: int, timed: bool) -> dict:
    import jax
    import numpy as np

    from bioxlstm_jax import presets
    from bioxlstm_jax.nn import XLSTMLM
    from bioxlstm_jax.training import base_config, causal_lm_task, make_mesh
    from bioxlstm_jax.training.mesh import batch_sharding, param_shardings
    from bioxlstm_jax.training.optim import make_optimizer
    from bioxlstm_jax.training.trainer import init_state, make_train_step

    cfg = presets.get(preset).replace(context_length=S, remat="block", remat_segment=2048)
    task = causal_lm_task(XLSTMLM(cfg), None)
    optimizer, schedule = make_optimizer(base_config().optimizer, 1000)
    mesh = make_mesh(data=1, context=context, devices=jax.devices()[:context])
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (1, S)).astype(np.int32)
    batch = {"tokens": jax.device_put(tokens, batch_sharding(mesh))}
    abstract = jax.eval_shape(lambda b: init_state(task, optimizer, 0, b), batch)
    shardings = param_shardings(abstract, mesh)
    with jax.set_mesh(mesh):
        state = jax.jit(lambda b: init_state(task, optimizer, 0, b), out_shardings=shardings)(batch)
        t0 = time.perf_counter()
        step_fn = jax.jit(make_train_step(task, optimizer, schedule), donate_argnums=0).lower(state, batch).compile()
        compile_s = time.perf_counter() - t0
        mem = step_fn.memory_analysis()
        planned = mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes
        collectives = Counter()
        op = re.compile(r" = (.*?) (all-gather|all-reduce|collective-permute|all-to-all|reduce-scatter)(?:-start)?\(")
        for m in filter(None, map(op.search, step_fn.as_text().splitlines())):
            for shape in re.findall(r"\w+\[[\d,]*\]", m.group(1)):  # combined (tuple) collectives flattened
                collectives[f"{m.group(2)} {shape}"] += 1
        out = {"planned_bytes_per_device": int(planned), "temp_bytes": int(mem.temp_size_in_bytes),
               "argument_bytes": int(mem.argument_size_in_bytes), "compile_seconds": compile_s,
               "collectives": dict(collectives.most_common())}
        if timed:
            t0 = time.perf_counter()
            state, metrics = step_fn(state, batch)
            out["loss"] = float(jax.block_until_ready(metrics["loss"]))
            out["seconds_per_step"] = time.perf_counter() - t0
    NH, DH = cfg.mlstm_num_heads, cfg.mlstm_head_dim
    out["summary_bytes_per_block_pass"] = 4 * context * NH * (DH * DH + DH + 2) if context > 1 else 0
    out["mlstm_blocks"] = cfg.block_types.count("m")
    return out


def _fit(rows, lengths):
    """{context: (a, b, longest S)} from the plans at two lengths: plan = a + b S per device."""
    out = {}
    for context in sorted({r["context"] for r in rows}):
        pts = {r["S"]: r["planned_bytes_per_device"] for r in rows if r["context"] == context and "error" not in r}
        if all(s in pts for s in lengths):
            (s0, p0), (s1, p1) = ((s, pts[s]) for s in lengths)
            b = (p1 - p0) / (s1 - s0)
            a = p0 - b * s0
            out[context] = {"fixed_bytes": a, "bytes_per_token": b, "longest_S_in_80GB": int((GPU_BYTES - a) / b)}
    return out


def bench(c, workdir):
    if c.worker:
        S, context, *plan = c.cases.split(":")
        print(json.dumps(worker(c.preset, int(S), int(context), timed=not plan)))
        return
    os.environ["XLA_FLAGS"] = " ".join(filter(None, [os.environ.get("XLA_FLAGS", ""),
                                                     "--xla_force_host_platform_device_count=8"]))
    rows = []
    print(f"{'S':>7s} {'context':>7s} {'plan GiB/dev':>12s} {'KiB/token':>10s} {'s/step':>8s} {'summary MiB/pass':>16s}")
    for case in c.cases.split(","):
        S, context, *plan = case.split(":")
        r = run_worker("context_parallel.py", c.timeout, worker="jax", cases=case, preset=c.preset)
        r.update(preset=c.preset, S=int(S), context=int(context))
        rows.append(r)
        if "error" in r:
            print(f"{S:>7s} {context:>7s} {r['error']}", flush=True)
        else:
            plan_b = r["planned_bytes_per_device"]
            step = f"{r['seconds_per_step']:8.1f}" if "seconds_per_step" in r else f"{'-':>8s}"
            print(f"{S:>7s} {context:>7s} {plan_b / 2**30:12.2f} {plan_b / int(S) / 1024:10.1f} {step} "
                  f"{r['summary_bytes_per_block_pass'] / 2**20:16.2f}", flush=True)
        fit = _fit(rows, [int(s) for s in c.fit.split(",")]) if c.fit else {}
        save_results(workdir, "context_parallel", {"benchmark": "context_parallel", "preset": c.preset, "batch": 1,
                                                   "dtype": "float32", "remat": "block:2048", "rows": rows,
                                                   "fit_80GB_per_device": fit})
    for context, f in fit.items():
        print(f"context {context}: {f['fixed_bytes'] / 2**30:.2f} GiB + {f['bytes_per_token'] / 1024:.1f} KiB x S per "
              f"device -> longest S in 80 GB: {f['longest_S_in_80GB']:,}")


if __name__ == "__main__":
    cli(bench, get_config)
