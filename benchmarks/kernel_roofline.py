"""The floor of the Pallas kernels on an H100, on paper: FLOPs and compulsory HBM bytes per kernel.

Usage::

    python benchmarks/kernel_roofline.py      # TFLA's shape and prot_xlstm_26m / 102m at 8k, bf16

A model, not a measurement. For each backend (Triton, Mosaic GPU) and each kernel of one forward +
backward call, with the tiles ``BlockSizes.for_shape`` picks (Triton) or 64 x 64 (Mosaic GPU):
* FLOPs the kernel executes as written (2 per multiply-add; the causal key tiles up to the diagonal,
  the score tiles recomputed once per head-dim tile; elementwise work not counted);
* compulsory HBM bytes: every input read once and every output written once (no re-reads: a lower
  bound; the kernels re-read q, k, v tiles and states, mostly from L2);
* the lower-bound time at H100 SXM peak: max(FLOPs / 989 TFLOP/s dense 16-bit (67 TFLOP/s for float32
  FMA), bytes / 3.35 TB/s), which of the two limits it, and the blocks per SM the compile table
  (``benchmarks/results/gpu_compile_sm_90a.json``, ``gpu_compile_mosaic_sm_90a.json``) allows by
  registers, shared memory and warps.
The Mosaic GPU kernels read operands XLA prepares (the weighted keys and queries, ``dh / (N + eps)``,
``n`` and ``q . n``): their bytes are one more row, ``xla_prep``.
Writes ``kernel_roofline_h100.json`` to the workdir (default ``benchmarks/results``).
"""

from __future__ import annotations

import datetime
import json
import sys
from math import ceil
from pathlib import Path

import ml_collections
from common import RESULTS_DIR, cli

PEAK_FLOPS = {"bfloat16": 989e12, "float16": 989e12, "float32": 67e12}  # H100 SXM, dense
HBM_BYTES_PER_S = 3.35e12
SMEM_PER_SM, REGS_PER_SM, MAX_WARPS_PER_SM, MAX_BLOCKS_PER_SM = 233472, 65536, 64, 32


def get_config():
    c = ml_collections.ConfigDict()
    # name:B:NH:S:DHQK:DHV:chunk:dtype
    c.cases = ("tfla:8:16:8192:128:256:64:bfloat16,prot_xlstm_26m:1:4:8192:256:256:256:bfloat16,"
               "prot_xlstm_102m:1:4:8192:512:512:256:bfloat16")
    return c


def kernels(B, NH, S, DK, DV, L, dtype, backend="triton"):
    """{kernel: (FLOPs, compulsory bytes)} of one forward + backward call (the states recomputed)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from pallas_kernels.mlstm_chunkwise import BlockSizes

    mosaic = backend == "mosaic"
    b = BlockSizes(64, 64, 64, 64, num_warps=4) if mosaic else BlockSizes.for_shape(L, DK, DV, dtype)
    bq, bkv, bk, bv = b.block_q, b.block_kv, b.block_dqk, b.block_dv
    s = 2 if dtype != "float32" else 4
    BH, NC, T = B * NH, S // L, S
    state = (NC + 1) * DK * DV * 4  # float32 states (or their gradients) of one head
    # Mosaic GPU: the recurrences write the states in 16 bits (and the last one in float32), the others read them so
    state_read = state // 2 if mosaic else state
    state_write = state_read + DK * DV * 4 if mosaic else state
    gates = 4 * T * 4  # about four float32 per-token gate rows read per kernel
    nq, nk = L // bq, L // bkv
    keys_upto = [ceil((t + 1) * bq / bkv) for t in range(nq)]  # key tiles up to the diagonal, per query tile
    queries_from = [nq - (j * bkv) // bq for j in range(nk)]  # query tiles from the diagonal, per key tile
    per_chunk = {
        "mlstm_chunk_states": (2 * L * DK * DV, T * (DK + DV) * s + gates + state_write),
        "mlstm_chunk_outputs": (DV // bv * sum(2 * bq * DK * bv + n * (2 * bq * bkv * DK + 2 * bq * bkv * bv)
                                               for n in keys_upto),
                                T * (2 * DK + DV) * s + gates + state_read + T * DV * s + 2 * T * 4),
        "mlstm_chunk_state_grads": (2 * L * DK * DV, T * (DK + DV) * s + gates + state_write),
        "mlstm_chunk_dq": (DK // bk * sum(2 * bq * DV * bk + n * (2 * bq * bkv * DV + 2 * bq * bkv * bk)
                                          for n in keys_upto), T * (DK + 2 * DV) * s + gates + state_read + T * DK * 4),
        "mlstm_chunk_dk": (DK // bk * sum(2 * bkv * DV * bk + m * (2 * bq * bkv * DV + 2 * bq * bkv * bk)
                                          for m in queries_from), T * (DK + 2 * DV) * s + gates + state_read + T * DK * 4),
        "mlstm_chunk_dv": (DV // bv * sum(2 * bkv * DK * bv + m * (2 * bq * bkv * DK + 2 * bq * bkv * bv)
                                          for m in queries_from), T * (2 * DK + DV) * s + gates + state_read + T * DV * 4),
    }
    # FLOPs above are per chunk and head; bytes per head. The forward's states kernel runs twice.
    out = {name: (flops * NC * BH, nbytes * BH) for name, (flops, nbytes) in per_chunk.items()}
    if mosaic:
        out = {f"{name}_mosaic": value for name, value in out.items()}
        prep = (2 * 2 * T * DK * s  # k -> weighted k, forward and recomputed in the backward
                + 2 * T * (DK + DV) * s  # q -> weighted q, dh -> dh / (N + eps)
                + 2 * T * DK * s)  # n (a recurrence over chunk sums of k) and q . n
        out["xla_prep_mosaic"] = (0, prep * BH)
    return out, b


def blocks_per_sm(k: dict) -> tuple[int, str]:
    warps = k.get("num_warps") or k["threads_per_block"] // 32
    regs_per_warp = -(-k["registers"] * 32 // 256) * 256
    limits = {"registers": REGS_PER_SM // regs_per_warp // warps,
              "shared memory": SMEM_PER_SM // (k["smem_bytes"] + 1024),
              "warps": MAX_WARPS_PER_SM // warps, "blocks": MAX_BLOCKS_PER_SM}
    limit = min(limits, key=limits.get)
    return limits[limit], limit


def roofline(c, workdir) -> dict:
    compiled = {}
    for backend, file in (("triton", "gpu_compile_sm_90a.json"), ("mosaic", "gpu_compile_mosaic_sm_90a.json")):
        table = json.loads((RESULTS_DIR / file).read_text())
        compiled[backend] = {case["case"]: {k["name"]: k for k in case.get("kernels", [])} for case in table["cases"]}
    results = []
    for spec, backend in [(spec, backend) for spec in c.cases.split(",") for backend in ("triton", "mosaic")]:
        name, B, NH, S, DK, DV, L, dtype = spec.split(":")
        B, NH, S, DK, DV, L = map(int, (B, NH, S, DK, DV, L))
        per_kernel, blocks = kernels(B, NH, S, DK, DV, L, dtype, backend)
        resources = compiled[backend].get(f"{dtype}:{DK}:{DV}:{L}", {})
        rows = []
        for kernel, (flops, nbytes) in per_kernel.items():
            t_flops, t_bytes = flops / PEAK_FLOPS[dtype], nbytes / HBM_BYTES_PER_S
            row = dict(kernel=kernel, gflop=round(flops / 1e9, 1), gbytes=round(nbytes / 1e9, 2),
                       floor_ms=round(max(t_flops, t_bytes) * 1e3, 3),
                       limit="compute" if t_flops > t_bytes else "HBM",
                       intensity_flop_per_byte=round(flops / nbytes, 1))
            if kernel in resources:
                row["blocks_per_sm"], row["occupancy_limit"] = blocks_per_sm(resources[kernel])
            rows.append(row)
        def base(kernel):
            return kernel.removesuffix("_mosaic")

        # The forward: states and outputs (and half of XLA's preparation: the weighted keys, C's cast, q . n).
        forward = sum(r["floor_ms"] for r in rows if base(r["kernel"]) in ("mlstm_chunk_states", "mlstm_chunk_outputs"))
        forward += sum(r["floor_ms"] / 2 for r in rows if base(r["kernel"]) == "xla_prep")
        total = sum(r["floor_ms"] for r in rows) + sum(r["floor_ms"] for r in rows
                                                        if base(r["kernel"]) == "mlstm_chunk_states")
        results.append(dict(case=spec, backend=backend, block_sizes=str(blocks), kernels=rows,
                            forward_floor_ms=round(forward, 3), forward_backward_floor_ms=round(total, 3)))
        print(f"{spec} {backend}: forward >= {forward:.2f} ms, forward+backward >= {total:.2f} ms ({blocks})")
        for r in rows:
            print(f"  {r['kernel']:31} {r['gflop']:8.1f} GFLOP {r['gbytes']:6.2f} GB  >= {r['floor_ms']:7.3f} ms "
                  f"({r['limit']}, {r['intensity_flop_per_byte']} FLOP/B)  blocks/SM {r.get('blocks_per_sm', '-')} "
                  f"({r.get('occupancy_limit', '-')})")
    from bioxlstm_jax.io import write_json

    write_json(Path(workdir) / "kernel_roofline_h100.json", {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": "none: a model of an H100 SXM (989 TFLOP/s dense bf16, 67 TFLOP/s float32, 3.35 TB/s)",
        "command": " ".join(sys.argv), "cases": results})
    return {}


if __name__ == "__main__":
    cli(roofline, get_config)
