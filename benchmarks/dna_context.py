"""DNA-xLSTM training step time and peak memory against context length (``dna_xlstm_4m``).

Usage (from the repository root)::

    python benchmarks/dna_context.py                          # 1k..32k, batch 1, ~15 minutes on 2 CPU cores
    python benchmarks/dna_context.py --lengths 1024 4096 --impls jax

One training step (causal LM loss, clipping, AdamW update) of ``dna_xlstm_4m`` at B = 1 and each
context length, measured by ``train_throughput.py``'s workers (one subprocess per point, so memory
figures do not mix): ours with the preset's chunkwise mLSTM (chunk 256), and the official PyTorch
``xlstm.xLSTMLMModel`` with the same sizes, whose mLSTM is the parallel form (memory quadratic in
context); a point that runs out of memory or past ``--timeout`` is recorded as an error. Memory is
XLA's buffer plan of the compiled step for JAX on CPU and the RSS growth for torch on CPU (the
allocators' peaks on GPU; see ``train_throughput.py``). The table adds memory and time per token
relative to the shortest context: constant for linear scaling. Writes
``benchmarks/results/dna_context_<device>.json`` (``--remat``: each JAX block rematerialised in the
backward pass, as ``XLSTMConfig.remat``; ``dna_context_remat_<device>.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_throughput import _run_worker, save_results  # noqa: E402

PRESET = "dna_xlstm_4m"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384, 32768])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--impls", nargs="+", default=["jax", "torch"])
    parser.add_argument("--dtype", default=None, help="float32 (CPU default) or bfloat16 (GPU default)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per measurement")
    parser.add_argument("--remat", action="store_true", help="JAX: rematerialise each block (results: dna_context_remat_*)")
    args = parser.parse_args(argv)

    import jax

    dev = jax.devices()[0]
    gpu = dev.platform == "gpu"
    dtype = args.dtype or ("bfloat16" if gpu else "float32")
    rows = []
    for impl in args.impls:
        failed = False
        for S in args.lengths:
            case = f"{PRESET}:{args.batch}x{S}"
            r = {"impl": impl, "S": S, "B": args.batch}
            if failed:  # a longer context of a failed implementation fails too
                r["error"] = "skipped (a shorter context failed)"
            else:
                r.update(_run_worker(impl, case, args.steps, dtype, None, None, timeout=args.timeout,
                                      remat=args.remat and impl == "jax"))
                failed = "error" in r
            rows.append(r)
            print(json.dumps(r), flush=True)

    print(f"\n{PRESET}, {dev.device_kind}, {dtype}, B = {args.batch}, remat {args.remat}, median of {args.steps} steps\n")
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
    out = save_results("dna_context_remat" if args.remat else "dna_context", dev,
                       {"preset": PRESET, "dtype": dtype, "batch": args.batch, "steps": args.steps,
                        "remat": args.remat, "rows": rows})
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
