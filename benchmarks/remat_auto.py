"""What ``remat="auto"`` chooses, and XLA's buffer plan of a training step with and without remat.

Usage::

    python benchmarks/remat_auto.py                   # the cases below: about 10 minutes on 2 CPU cores
    python benchmarks/remat_auto.py --config.cases=prot_xlstm_26m:none:1024

Each case ``preset:bidirectional:S`` compiles one training step at batch 1 (float32; the loss, its
gradients, clipping and the AdamW update, as ``benchmarks/long_context.py`` builds it, from abstract
arrays: nothing is allocated or run) with ``remat="none"`` and with ``remat="block"`` (segments of
2048 tokens), and reports XLA's buffer plan of each (temp + arguments + outputs - aliases, bytes), the
activation estimate of ``nn.activation_bytes`` that ``"auto"`` decides by, and what ``"auto"`` picks on
this machine (``nn.resolve_remat``: none when the estimate fits in half the device memory) and, on
paper, on an 80 GB GPU. The ``dna_xlstm_4m`` cases with ``sum`` are the masked-LM model of
``dna_pretrain`` (both directions); its causal-LM loss is used for the plan (the same per-token head).
Writes ``remat_auto_<device>.json`` to the workdir (default ``benchmarks/results``).
"""

from __future__ import annotations

import time

import ml_collections
import numpy as np
from common import cli, save_results

CASES = ",".join(f"{preset}:{S}" for preset in ("prot_xlstm_26m:none", "dna_xlstm_4m:none", "dna_xlstm_4m:sum")
                 for S in (1024, 8192, 32768, 131072))
GPU_80GB = 80 * 2**30


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.cases = CASES  # comma-separated preset:bidirectional:S
    c.policies = "none,block"
    return c


def planned_bytes(cfg, S: int) -> tuple[int, float]:
    """XLA's buffer plan of one training step of ``cfg`` at (1, S), and the compile time (s)."""
    import jax
    import jax.numpy as jnp

    from bioxlstm_jax.nn import XLSTMLM
    from bioxlstm_jax.training import base_config, causal_lm_task
    from bioxlstm_jax.training.optim import make_optimizer
    from bioxlstm_jax.training.trainer import init_state, make_train_step

    task = causal_lm_task(XLSTMLM(cfg), None)
    optimizer, schedule = make_optimizer(base_config().optimizer, 1000)
    batch = {"tokens": jax.ShapeDtypeStruct((1, S), jnp.int32)}
    state = jax.eval_shape(lambda b: init_state(task, optimizer, 0, b), batch)
    t0 = time.perf_counter()
    mem = jax.jit(make_train_step(task, optimizer, schedule), donate_argnums=0).lower(state, batch).compile() \
        .memory_analysis()
    seconds = time.perf_counter() - t0
    return mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes, \
        seconds


def bench(c, workdir):
    from bioxlstm_jax import presets
    from bioxlstm_jax.nn import activation_bytes, resolve_remat
    from bioxlstm_jax.nn.backbone import device_memory_bytes

    memory = device_memory_bytes()
    rows = []
    print(f"{'preset':15s} {'bidir':5s} {'S':>7s} {'estimate GiB':>12s} {'auto here':>9s} {'auto 80GB':>9s} "
          + " ".join(f"{'plan ' + p + ' GiB':>16s}" for p in c.policies.split(",")))
    for case in c.cases.split(","):
        preset, bidirectional, S = case.split(":")
        S = int(S)
        cfg = presets.get(preset, context_length=S, bidirectional=bidirectional)
        estimate = activation_bytes(cfg, 1, S)
        row = {"preset": preset, "bidirectional": bidirectional, "S": S, "activation_estimate_bytes": estimate,
               "auto_here": resolve_remat(cfg, 1, S), "auto_80gb_gpu_on_paper": "none" if estimate <= GPU_80GB / 2
               else "block", "plans": {}}
        for policy in c.policies.split(","):
            planned, seconds = planned_bytes(cfg.replace(remat=policy), S)
            row["plans"][policy] = {"planned_bytes": int(planned), "planned_kib_per_token": planned / S / 1024,
                                    "compile_seconds": seconds}
        rows.append(row)
        print(f"{preset:15s} {bidirectional:5s} {S:7d} {estimate / 2**30:12.2f} {row['auto_here']:>9s} "
              f"{row['auto_80gb_gpu_on_paper']:>9s} "
              + " ".join(f"{row['plans'][p]['planned_bytes'] / 2**30:16.2f}" for p in c.policies.split(",")),
              flush=True)
    out = save_results(workdir, "remat_auto", {"benchmark": "remat_auto", "batch": 1, "dtype": "float32",
                                               "device_memory_bytes": int(memory), "rows": rows},
                       extra_versions=())
    print(f"wrote {out}")
    return np.asarray([])


if __name__ == "__main__":
    cli(bench, get_config)
