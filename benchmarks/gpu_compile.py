"""The Pallas kernels compiled for NVIDIA GPUs without a GPU: every kernel, forward and backward, per case.

Usage::

    pip install --no-deps jax-cuda12-plugin==<jaxlib> jax-cuda12-pjrt==<jaxlib> nvidia-cuda-nvcc-cu12==12.9.86
    python benchmarks/gpu_compile.py                                 # every case, A100 and H100
    python benchmarks/gpu_compile.py --config.archs=sm_90a --config.cases=bfloat16:128:256:64

A case ``dtype:DHQK:DHV:chunk`` is ``jax.vjp`` of ``pallas_kernels.mlstm_chunkwise`` (forward and
backward, the program ``ops.mlstm_chunkwise(kernel="auto")`` compiles) at B = 1, NH = 4, S = 4 chunks,
with ``BlockSizes.for_shape``'s tiles. For each target GPU (``sm_80``: A100, 163 KiB of shared memory per
block; ``sm_90a``: H100 / H200, 227 KiB), in a child process per case (an LLVM fatal error ends a
process):

1. the program is lowered on a compile-only CUDA device (``jax.experimental.topologies`` with XLA's
   description of the GPU) and compiled by XLA's GPU compiler, deviceless: its Triton pipeline, its
   shared-memory check and ptxas, as on the GPU (``whole``: ok or the compiler's error);
2. each Triton kernel of the lowered program alone, through the same Triton pipeline as a library call
   of the CUDA plugin (``jax._src.lib.triton.compile``): shared memory; then ``ptxas -v`` on its PTX:
   registers, spill bytes. Grid, warps and stages come from the kernel's custom call.

Numbers are compiler outputs, not measurements on a GPU. Writes ``gpu_compile_<arch>.json`` per target
to the workdir (default ``benchmarks/results``). Exit status 1 when any case fails.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ml_collections
from common import ROOT, cli, versions

os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")  # the CUDA plugin checks libraries a GPU has
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# What XLA needs to know of each GPU (a subset of XLA's GpuTargetConfig specs, the fields its GPU
# compiler reads). shared_memory_per_block_optin is the per-block limit kernels are checked against.
_DEVICE_INFO = {
    "sm_80": dict(name="a100", kind="NVIDIA A100-SXM4-80GB", major=8, cores=108, fpus=64, smem_core=167936,
                  smem_optin=166912, bandwidth=2039000000000, l2=41943040, clock=1.41, memory=85031714816),
    "sm_90a": dict(name="h100", kind="NVIDIA H100 80GB HBM3", major=9, cores=132, fpus=128, smem_core=233472,
                   smem_optin=232448, bandwidth=3352320000000, l2=52428800, clock=1.98, memory=84942979072),
}
CASES = (  # dtype:DHQK:DHV:chunk -- the head dims and chunk sizes of every preset, both compute dtypes
    "float32:64:64:64", "bfloat16:64:64:64",  # dna_xlstm_500k
    "float32:128:128:64", "bfloat16:128:128:64",  # dna_xlstm_2m, chem_xlstm_15m
    "float32:128:128:256", "bfloat16:128:128:256",  # dna_xlstm_4m
    "float32:256:256:256", "bfloat16:256:256:256",  # prot_xlstm_26m
    "float32:512:512:256", "bfloat16:512:512:256",  # prot_xlstm_102m
    "bfloat16:128:256:64", "float16:128:256:64",  # TFLA's benchmark shape
    "float32:128:128:1024", "bfloat16:128:128:1024",  # the longest chunk kernel="auto" takes
)
MAX_SPILL_BYTES = 256  # a kernel spilling more than this fails the compile tier


def get_config():
    c = ml_collections.ConfigDict()
    c.archs = "sm_80,sm_90a"
    c.cases = ",".join(CASES)
    c.timeout = 900  # seconds per case (child process)
    c.worker = ""  # internal: "arch;case" runs one case in this process and prints its JSON
    return c


def _target_config(arch: str) -> str:
    d = _DEVICE_INFO[arch]
    return f"""
gpu_device_info {{
  threads_per_block_limit: 1024
  threads_per_warp: 32
  shared_memory_per_block: 49152
  shared_memory_per_core: {d['smem_core']}
  threads_per_core_limit: 2048
  core_count: {d['cores']}
  fpus_per_core: {d['fpus']}
  block_dim_limit_x: 2147483647
  block_dim_limit_y: 65535
  block_dim_limit_z: 65535
  memory_bandwidth: {d['bandwidth']}
  l2_cache_size: {d['l2']}
  clock_rate_ghz: {d['clock']}
  device_memory_size: {d['memory']}
  shared_memory_per_block_optin: {d['smem_optin']}
  cuda_compute_capability {{ major: {d['major']} }}
  registers_per_core_limit: 65536
  registers_per_block_limit: 65536
}}
platform_name: "CUDA"
dnn_version_info {{ major: 9 minor: 8 }}
device_description_str: "{d['kind']}"
"""


def _ptxas() -> str:
    import site

    for root in site.getsitepackages():
        path = Path(root) / "nvidia" / "cuda_nvcc" / "bin" / "ptxas"
        if path.exists():
            return str(path)
    raise FileNotFoundError("ptxas not found: pip install nvidia-cuda-nvcc-cu12 (see this script's docstring)")


def parse_case(case: str) -> dict:
    dtype, dk, dv, chunk = case.split(":")
    return dict(dtype=dtype, dhqk=int(dk), dhv=int(dv), chunk=int(chunk))


def _program(case: dict, sharding):
    """(function, argument specs): forward and backward of the kernels for ``case``."""
    import jax
    import jax.numpy as jnp

    from pallas_kernels import mlstm_chunkwise
    from pallas_kernels.mlstm_chunkwise import BlockSizes

    B, NH, L = 1, 4, case["chunk"]
    S = 4 * L
    dt = jnp.dtype(case["dtype"])
    spec = lambda shape, d=dt: jax.ShapeDtypeStruct(shape, d, sharding=sharding)  # noqa: E731
    args = [spec((B, NH, S, case["dhqk"])), spec((B, NH, S, case["dhqk"])), spec((B, NH, S, case["dhv"])),
            spec((B, NH, S), jnp.float32), spec((B, NH, S), jnp.float32), spec((B, NH, S, case["dhv"]))]

    def run(q, k, v, i, f):
        return mlstm_chunkwise(q, k, v, i, f, chunk_size=L, return_last_state=True, interpret=False)

    def forward_backward(q, k, v, i, f, dh):
        (h, last), pullback = jax.vjp(run, q, k, v, i, f)
        return pullback((dh, jax.tree.map(jnp.zeros_like, last)))

    return forward_backward, args, BlockSizes.for_shape(L, case["dhqk"], case["dhv"], dt)


def _triton_calls(lowered) -> list[dict]:
    """Every ``__gpu$xla.gpu.triton`` custom call of a lowered program: name, Triton IR, launch parameters."""
    from jax._src.lib.mlir import ir

    calls = []

    def visit(op):
        for region in op.regions:
            for block in region.blocks:
                for inner in block.operations:
                    attrs = inner.operation.attributes
                    if (inner.operation.name == "stablehlo.custom_call"
                            and ir.StringAttr(attrs["call_target_name"]).value == "__gpu$xla.gpu.triton"):
                        config = ir.DictAttr(attrs["mhlo.backend_config"])
                        number = lambda key: ir.IntegerAttr(config[key]).value  # noqa: E731
                        calls.append(dict(name=ir.StringAttr(config["name"]).value,
                                          ir=ir.StringAttr(config["ir"]).value_bytes,
                                          num_warps=number("num_warps"), num_stages=number("num_stages"),
                                          grid=[number("grid_x"), number("grid_y"), number("grid_z")]))
                    visit(inner.operation)

    visit(lowered.compiler_ir("stablehlo").operation)
    return calls


def _kernel_resources(call: dict, arch: str, ptxas: str, folder: Path) -> dict:
    """Shared memory (the Triton pipeline's), registers and spills (ptxas) of one kernel."""
    from jax._src.lib import triton

    cc = f"{_DEVICE_INFO[arch]['major']}.0"
    out = dict(name=call["name"], grid=call["grid"], num_warps=call["num_warps"], num_stages=call["num_stages"])
    try:
        res = triton.compile("CUDA", call["ir"], cc, num_warps=call["num_warps"], num_ctas=1,
                             num_stages=call["num_stages"])
    except Exception as err:  # noqa: BLE001 - the compiler's error is the result
        return dict(out, ok=False, error=f"{type(err).__name__}: {err}"[:2000])
    out["smem_bytes"] = int(res.smem_bytes)
    ptx = folder / f"{call['name']}.ptx"
    ptx.write_text(res.asm)
    p = subprocess.run([ptxas, f"-arch={arch}", "-v", str(ptx), "-o", str(ptx.with_suffix(".cubin"))],
                       capture_output=True, text=True)
    log = p.stdout + p.stderr
    regs = re.search(r"Used (\d+) registers", log)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    out.update(registers=int(regs.group(1)) if regs else None,
               spill_store_bytes=int(spills.group(1)) if spills else None,
               spill_load_bytes=int(spills.group(2)) if spills else None,
               tensor_core_ops={"wgmma": res.asm.count("wgmma.mma_async"), "mma": res.asm.count("mma.sync")})
    problems = []
    if p.returncode != 0:
        problems.append("ptxas: " + " | ".join(ln for ln in log.splitlines() if "error" in ln.lower())[:1000])
    if out["smem_bytes"] > _DEVICE_INFO[arch]["smem_optin"]:
        problems.append(f"shared memory {out['smem_bytes']} B > {_DEVICE_INFO[arch]['smem_optin']} B per block")
    if (out["spill_store_bytes"] or 0) + (out["spill_load_bytes"] or 0) > MAX_SPILL_BYTES:
        problems.append(f"spills {out['spill_store_bytes']} B stored, {out['spill_load_bytes']} B loaded "
                        f"(more than {MAX_SPILL_BYTES} B)")
    return dict(out, ok=not problems, **({"error": "; ".join(problems)} if problems else {}))


def compile_case(arch: str, case_text: str) -> dict:
    """One case for one target GPU: the whole program through XLA, then every kernel's resources."""
    import jax
    from jax.experimental import topologies

    case = parse_case(case_text)
    device = topologies.get_topology_desc(_DEVICE_INFO[arch]["name"], platform="cuda",
                                          target_config=_target_config(arch), topology="1x1x1").devices[0]
    fn, args, blocks = _program(case, jax.sharding.make_single_device_sharding(device))
    result = dict(case=case_text, **case, block_sizes=dataclasses.asdict(blocks))
    start = time.time()
    lowered = jax.jit(fn).trace(*args).lower()
    try:
        lowered.compile()
        result["whole"] = {"ok": True}
    except Exception as err:  # noqa: BLE001 - the compiler's error is the result
        result["whole"] = {"ok": False, "error": f"{type(err).__name__}: {err}"[:2000]}
    result["whole"]["seconds"] = round(time.time() - start, 1)
    ptxas = _ptxas()
    with tempfile.TemporaryDirectory() as folder:
        kernels = {}
        for call in _triton_calls(lowered):  # the forward's states kernel appears twice (recomputed in the backward)
            kernels.setdefault((call["name"], call["num_warps"], call["num_stages"], tuple(call["grid"])), call)
        result["kernels"] = [_kernel_resources(c, arch, ptxas, Path(folder)) for c in kernels.values()]
    result["ok"] = result["whole"]["ok"] and all(k["ok"] for k in result["kernels"])
    return result


def _run_child(arch: str, case: str, timeout: float) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    try:
        p = subprocess.run([sys.executable, __file__, f"--config.worker={arch};{case}"], capture_output=True, text=True,
                           timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return dict(case=case, ok=False, error=f"timed out after {timeout} s")
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = [ln for ln in (p.stderr + p.stdout).splitlines() if ln.strip()][-5:]
        return dict(case=case, ok=False, error=f"child exited {p.returncode}: " + " | ".join(tail)[:2000])
    return json.loads(lines[-1])


def _summary(r: dict) -> str:
    if "kernels" not in r:
        return f"{r['case']:24} FAILED: {r.get('error', '')[:300]}"
    worst = max(r["kernels"], key=lambda k: k.get("smem_bytes") or 0)
    spill = max((k.get("spill_store_bytes") or 0) + (k.get("spill_load_bytes") or 0) for k in r["kernels"])
    regs = max(k.get("registers") or 0 for k in r["kernels"])
    status = "ok" if r["ok"] else "FAILED: " + "; ".join(
        [r["whole"].get("error", "")[:300]] + [f"{k['name']}: {k['error'][:200]}" for k in r["kernels"] if not k["ok"]])
    return (f"{r['case']:24} whole {'ok' if r['whole']['ok'] else 'FAILED'} ({r['whole']['seconds']} s); max smem "
            f"{worst.get('smem_bytes')} B ({worst['name']}), max registers {regs}, max spill {spill} B: {status}")


def gpu_compile(c, workdir) -> dict:
    """Compiles every case for every target; writes ``gpu_compile_<arch>.json``; exit status 1 on a failure."""
    if c.worker:
        arch, case = c.worker.split(";")
        print(json.dumps(compile_case(arch, case)), flush=True)
        return {}
    archs = [a for a in c.archs.split(",") if a]
    unknown = [a for a in archs if a not in _DEVICE_INFO]
    if unknown:
        raise ValueError(f"--config.archs: unknown {unknown}; known: {', '.join(_DEVICE_INFO)}")
    cases = [x for x in c.cases.split(",") if x]
    for case in cases:
        parse_case(case)
    failed = False
    for arch in archs:
        start, results = time.time(), []
        for case in cases:
            results.append(_run_child(arch, case, c.timeout))
            print(f"{arch} {_summary(results[-1])}", flush=True)
        failed |= not all(r["ok"] for r in results)
        payload = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                   "device": f"none: deviceless compile for {arch} ({_DEVICE_INFO[arch]['kind']})",
                   "versions": {**versions(), "jax-cuda12-plugin": importlib.metadata.version("jax-cuda12-plugin"),
                                "nvidia-cuda-nvcc-cu12": importlib.metadata.version("nvidia-cuda-nvcc-cu12")},
                   "command": " ".join(sys.argv),
                   "max_spill_bytes": MAX_SPILL_BYTES, "seconds": round(time.time() - start, 1), "cases": results}
        from bioxlstm_jax.io import write_json

        write_json(Path(workdir) / f"gpu_compile_{arch}.json", payload)
    if failed:
        raise SystemExit(1)
    return {}


if __name__ == "__main__":
    cli(gpu_compile, get_config)
