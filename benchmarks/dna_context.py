"""DNA-xLSTM training step time and peak memory against context length (``dna_xlstm_4m``).

Usage::

    python benchmarks/dna_context.py                          # 1k..32k, batch 1, ~15 minutes on 2 CPU cores
    python benchmarks/dna_context.py --config.lengths=1024,4096 --config.impls=jax

One training step (causal LM loss, clipping, AdamW update) of ``dna_xlstm_4m`` at B = 1 and each
context length, measured by ``train_throughput.py``'s workers (one subprocess per point, so memory
figures do not mix): ours with the preset's chunkwise mLSTM (chunk 256), and the official PyTorch
``xlstm.xLSTMLMModel`` with the same sizes, whose mLSTM is the parallel form (memory quadratic in
context); a point that runs out of memory or past ``config.timeout`` is recorded as an error. Memory is
XLA's buffer plan of the compiled step for JAX on CPU and the RSS growth for torch on CPU (the
allocators' peaks on GPU; see ``train_throughput.py``). The table adds memory and time per token
relative to the shortest context: constant for linear scaling. Writes ``dna_context_<device>.json``
to the workdir (default ``benchmarks/results``; with ``config.remat`` other than ``none``, the JAX
blocks rematerialised as ``XLSTMConfig.remat``: ``dna_context_remat_<device>.json``).
"""

from __future__ import annotations

import json

import ml_collections
from common import cli, save_results
from ml_collections.config_dict import placeholder
from train_throughput import _run_worker

PRESET = "dna_xlstm_4m"


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.lengths = (1024, 2048, 4096, 8192, 16384, 32768)
    c.batch = 1
    c.steps = 2
    c.impls = "jax,torch"
    c.dtype = placeholder(str)  # unset: float32 on CPU, bfloat16 on GPU
    c.timeout = 600.0  # seconds per measurement
    c.remat = "none"  # JAX: XLSTMConfig.remat (results: dna_context_remat_*)
    return c


def bench(c, workdir):
    import jax

    dev = jax.devices()[0]
    gpu = dev.platform == "gpu"
    dtype = c.dtype or ("bfloat16" if gpu else "float32")
    rows = []
    for impl in c.impls.split(","):
        failed = False
        for S in c.lengths:
            case = f"{PRESET}:{c.batch}x{S}"
            r = {"impl": impl, "S": S, "B": c.batch}
            if failed:  # a longer context of a failed implementation fails too
                r["error"] = "skipped (a shorter context failed)"
            else:
                r.update(_run_worker(impl, case, c.steps, dtype, timeout=c.timeout,
                                     remat=c.remat if impl == "jax" else "none"))
                failed = "error" in r
            rows.append(r)
            print(json.dumps(r), flush=True)

    print(f"\n{PRESET}, {dev.device_kind}, {dtype}, B = {c.batch}, remat {c.remat}, median of {c.steps} steps\n")
    print("| impl | context | s/step | tokens/s | peak memory MiB | memory/token vs shortest | time/token vs shortest |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['impl']} | {r['S']} | - | - | - | - | {r['error'][:70]} |")
            continue
        base = next(x for x in rows if x["impl"] == r["impl"] and "error" not in x)
        r["tokens_per_s"] = r["B"] * r["S"] / r["seconds_per_step"]
        mem_ratio = (r["peak_memory_bytes"] / r["S"]) / (base["peak_memory_bytes"] / base["S"])
        time_ratio = (r["seconds_per_step"] / r["S"]) / (base["seconds_per_step"] / base["S"])
        print(f"| {r['impl']} | {r['S']} | {r['seconds_per_step']:.2f} | {r['tokens_per_s']:.0f} | "
              f"{r['peak_memory_bytes'] / 2**20:.0f} | {mem_ratio:.2f} | {time_ratio:.2f} |")
    out = save_results(workdir, "dna_context" if c.remat == "none" else "dna_context_remat",
                       {"preset": PRESET, "dtype": dtype, "batch": c.batch, "steps": c.steps, "remat": c.remat,
                        "rows": rows})
    print(f"\nwrote {out}")


if __name__ == "__main__":
    cli(bench, get_config)
