"""The Pallas kernels compiled for NVIDIA GPUs without a GPU: every kernel, forward and backward, per case.

Usage::

    pip install --no-deps jax-cuda12-plugin==<jaxlib> jax-cuda12-pjrt==<jaxlib> nvidia-cuda-nvcc-cu12==12.9.86
    python benchmarks/gpu_compile.py                                 # every case, A100 and H100
    python benchmarks/gpu_compile.py --config.archs=sm_90a --config.cases=bfloat16:128:256:64

    # the Mosaic GPU kernels (H100 / H200 only); jax >= 0.12.1: the CUDA 13 plugin and a CUDA 13 ptxas on PATH
    pip install --no-deps jax-cuda13-plugin==<jaxlib> jax-cuda13-pjrt==<jaxlib>
    pip install --no-deps --target /tmp/nvcc13 nvidia-cuda-nvcc==13.0.88      # outside the venv
    PATH=/tmp/nvcc13/nvidia/cu13/bin:$PATH python benchmarks/gpu_compile.py --config.backend=mosaic

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

``--config.backend=mosaic`` compiles the Mosaic GPU kernels (``backend="mosaic"``: TMA and wgmma, so
``sm_90a`` only, and 16-bit inputs only: wgmma has no IEEE float32) the same way; step 2 reads what
Mosaic's own pipeline (MLIR, PTX, ptxas, run inside XLA's compile) dumps per kernel (``MOSAIC_GPU_DUMP_TO``):
registers and spills from its ``ptxas -v`` log, threads per block and wgmma / TMA instructions from its
PTX, the launch grid and dynamic shared memory from its module. Mosaic runs the ``ptxas`` on PATH (then
``/usr/local/cuda/bin``), which must be CUDA 13's (PTX ISA 9.0).

Numbers are compiler outputs, not measurements on a GPU. Writes ``gpu_compile_<arch>.json`` (Mosaic:
``gpu_compile_mosaic_<arch>.json``) per target to the workdir (default ``benchmarks/results``). Exit status
1 when any case fails.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import os
import re
import shutil
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
MOSAIC_CASES = tuple(c for c in CASES if not c.startswith("float32"))  # wgmma: 16-bit operands only
BACKENDS = {  # default targets and cases, the CUDA plugin, the result file's name
    "triton": dict(archs=("sm_80", "sm_90a"), cases=CASES, plugin="jax-cuda12-plugin", prefix="gpu_compile"),
    "mosaic": dict(archs=("sm_90a",), cases=MOSAIC_CASES, plugin="jax-cuda13-plugin", prefix="gpu_compile_mosaic"),
}
MAX_SPILL_BYTES = 256  # a kernel spilling more than this fails the compile tier
_MOSAIC_DUMPS = ("PTX", "PTXAS", "RESOURCES")  # MOSAIC_GPU_DUMP_<x>=1; the folder: MOSAIC_GPU_DUMP_TO


def get_config():
    c = ml_collections.ConfigDict()
    c.backend = "triton"  # or "mosaic": the Mosaic GPU kernels
    c.archs = ""  # default: the backend's (triton: sm_80,sm_90a; mosaic: sm_90a)
    c.cases = ""  # default: the backend's (CASES; mosaic: MOSAIC_CASES)
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


def _mosaic_ptxas_version() -> str:
    """The version of the ptxas Mosaic will run (PATH, then /usr/local/cuda/bin); it must be CUDA 13's."""
    path = shutil.which("ptxas") or shutil.which("ptxas", path="/usr/local/cuda/bin")
    out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout if path else ""
    version = re.search(r"V(\d+\.\d+\.\d+)", out)
    if not version or int(version.group(1).split(".")[0]) < 13:
        raise FileNotFoundError(f"Mosaic GPU needs a CUDA 13 ptxas on PATH (found {path}: "
                                f"{version.group(1) if version else 'none'}); see this script's docstring")
    return version.group(1)


def parse_case(case: str, backend: str = "triton") -> dict:
    dtype, dk, dv, chunk = case.split(":")
    if backend == "mosaic" and dtype not in ("bfloat16", "float16"):
        raise ValueError(f"--config.cases: {case}: the Mosaic GPU kernels take bfloat16 / float16 only "
                         "(wgmma has no IEEE float32 mode; float32 runs on the Triton kernels)")
    return dict(dtype=dtype, dhqk=int(dk), dhv=int(dv), chunk=int(chunk))


def _program(case: dict, sharding, backend: str = "triton"):
    """(function, argument specs, Triton tiles): forward and backward of the kernels for ``case``."""
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
        return mlstm_chunkwise(q, k, v, i, f, chunk_size=L, return_last_state=True, backend=backend,
                               interpret=False)

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
    errors = " | ".join(ln for ln in log.splitlines() if "error" in ln.lower())[:1000]
    return _check(out, arch, errors if p.returncode else "")


def _check(out: dict, arch: str, ptxas_failed: str = "") -> dict:
    """``out`` with ``ok`` and ``error``: ptxas failed, shared memory over the block's limit, or spills."""
    problems = [f"ptxas: {ptxas_failed}"] if ptxas_failed else []
    if (out.get("smem_bytes") or 0) > _DEVICE_INFO[arch]["smem_optin"]:
        problems.append(f"shared memory {out['smem_bytes']} B > {_DEVICE_INFO[arch]['smem_optin']} B per block")
    if (out.get("spill_store_bytes") or 0) + (out.get("spill_load_bytes") or 0) > MAX_SPILL_BYTES:
        problems.append(f"spills {out['spill_store_bytes']} B stored, {out['spill_load_bytes']} B loaded "
                        f"(more than {MAX_SPILL_BYTES} B)")
    return dict(out, ok=not problems, **({"error": "; ".join(problems)} if problems else {}))


def _mosaic_kernel(ptxas_log: Path) -> dict:
    """One Mosaic kernel from its dumps (``<kernel>_<n>.ptxas`` / ``.ptx`` from the compile; the module,
    ``<kernel>_<m>.before_layout_inference.txt``, from the lowering, numbered in another order)."""
    log = ptxas_log.read_text()
    ptx_path = ptxas_log.with_suffix(".ptx")
    ptx = ptx_path.read_text() if ptx_path.exists() else ""
    regs = re.search(r"Used (\d+) registers", log)
    static_smem = re.search(r"(\d+) bytes smem", log)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    threads = re.search(r"\.maxntid (\d+), (\d+), (\d+)", ptx)
    out = dict(name=re.sub(r"_\d+$", "", ptxas_log.stem),
               threads_per_block=threads and int(threads[1]) * int(threads[2]) * int(threads[3]),
               registers=regs and int(regs[1]), static_smem_bytes=static_smem and int(static_smem[1]),
               spill_store_bytes=spills and int(spills[1]), spill_load_bytes=spills and int(spills[2]),
               tensor_core_ops={"wgmma": ptx.count("wgmma.mma_async")},
               tma_copies={"gmem_to_smem": len(re.findall(r"cp\.async\.bulk\.tensor\.\d+d\.shared", ptx)),
                           "smem_to_gmem": len(re.findall(r"cp\.async\.bulk\.tensor\.\d+d\.global", ptx))})
    errors = " | ".join(ln for ln in log.splitlines() if "error" in ln.lower())[:1000]
    return dict(out, ptxas_error=(errors or "no register count in its log") if regs is None else "")


def _mosaic_launch(module: Path) -> dict:
    """Launch grid (x, y, z) and dynamic shared memory of a kernel's ``gpu.launch`` (index constants are
    printed ``%c<value>``); what is not found is left out."""
    text = module.read_text()
    dim = r"%\w+ = %c(\d+)\w*"
    grid = re.search(rf"gpu\.launch .*?blocks\([^)]*\) in \({dim}, {dim}, {dim}\)", text)
    smem = re.search(r"gpu\.launch .*?dynamic_shared_memory_size %c(\d+)", text)
    return dict(**({"grid": [int(g) for g in grid.groups()]} if grid else {}),
                **({"dynamic_smem_bytes": int(smem[1])} if smem else {}))


def _merged(instances: list[dict]) -> dict:
    """One entry for a kernel's instances (the states kernel runs in the forward and again in the
    backward): fields they agree on; numbers they differ in, the largest."""
    out = {}
    for key in instances[0]:
        values = [i.get(key) for i in instances]
        if all(v == values[0] for v in values):
            out[key] = values[0]
        elif all(isinstance(v, int) for v in values):
            out[key] = max(values)
    return out


def _by_kernel(files) -> dict[str, list[Path]]:
    """Mosaic's dump files ``<kernel>_<n>.<what>`` by kernel, in the order of ``n``."""
    out = {}
    for f in sorted(files, key=lambda f: int(f.name.split(".")[0].rsplit("_", 1)[1])):
        out.setdefault(f.name.split(".")[0].rsplit("_", 1)[0], []).append(f)
    return out


def _mosaic_kernels(folder: Path, arch: str) -> list[dict]:
    """Every Mosaic kernel of the program, in the program's order, from the dumps in ``folder``; a kernel
    that was lowered but has no ptxas log (its compile failed) fails."""
    modules = _by_kernel(folder.glob("*.before_layout_inference.txt"))  # the lowering: every kernel
    logs = _by_kernel(folder.glob("*.ptxas"))  # XLA's compile: those that reached ptxas
    kernels = []
    for name in dict.fromkeys([*modules, *logs]):
        instances = [_mosaic_kernel(log) for log in logs.get(name, [])]
        k = ({"name": name} | _merged([_mosaic_launch(m) for m in modules.get(name, [])] or [{}])
             | _merged(instances or [{"ptxas_error": "no ptxas log: not compiled"}]) | {"instances": len(instances)})
        if "dynamic_smem_bytes" in k:
            k["smem_bytes"] = k["dynamic_smem_bytes"] + (k.get("static_smem_bytes") or 0)
        kernels.append(_check(k, arch, k.pop("ptxas_error", "")))
    return kernels


def compile_case(arch: str, case_text: str, backend: str = "triton") -> dict:
    """One case for one target GPU: the whole program through XLA, then every kernel's resources."""
    import jax
    from jax.experimental import topologies

    case = parse_case(case_text, backend)
    device = topologies.get_topology_desc(_DEVICE_INFO[arch]["name"], platform="cuda",
                                          target_config=_target_config(arch), topology="1x1x1").devices[0]
    fn, args, blocks = _program(case, jax.sharding.make_single_device_sharding(device), backend)
    result = dict(case=case_text, **case)
    if backend == "triton":
        result["block_sizes"] = dataclasses.asdict(blocks)
    start = time.time()
    lowered = jax.jit(fn).trace(*args).lower()
    try:
        lowered.compile()
        result["whole"] = {"ok": True}
    except Exception as err:  # noqa: BLE001 - the compiler's error is the result
        result["whole"] = {"ok": False, "error": f"{type(err).__name__}: {err}"[:2000]}
    result["whole"]["seconds"] = round(time.time() - start, 1)
    if backend == "mosaic":  # the dumps of the lowering and of XLA's compile (the parent set MOSAIC_GPU_DUMP_*)
        result["kernels"] = _mosaic_kernels(Path(os.environ["MOSAIC_GPU_DUMP_TO"]), arch)
        result["ok"] = result["whole"]["ok"] and bool(result["kernels"]) and all(k["ok"] for k in result["kernels"])
        return result
    ptxas = _ptxas()
    with tempfile.TemporaryDirectory() as folder:
        kernels = {}
        for call in _triton_calls(lowered):  # the forward's states kernel appears twice (recomputed in the backward)
            kernels.setdefault((call["name"], call["num_warps"], call["num_stages"], tuple(call["grid"])), call)
        result["kernels"] = [_kernel_resources(c, arch, ptxas, Path(folder)) for c in kernels.values()]
    result["ok"] = result["whole"]["ok"] and all(k["ok"] for k in result["kernels"])
    return result


def _run_child(arch: str, case: str, timeout: float, backend: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    try:
        with tempfile.TemporaryDirectory() as dumps:  # Mosaic's dumps of this case's kernels
            if backend == "mosaic":
                env.update(MOSAIC_GPU_DUMP_TO=dumps, **{f"MOSAIC_GPU_DUMP_{x}": "1" for x in _MOSAIC_DUMPS})
            args = [sys.executable, __file__, f"--config.backend={backend}", f"--config.worker={arch};{case}"]
            p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return dict(case=case, ok=False, error=f"timed out after {timeout} s")
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = [ln for ln in (p.stderr + p.stdout).splitlines() if ln.strip()][-5:]
        return dict(case=case, ok=False, error=f"child exited {p.returncode}: " + " | ".join(tail)[:2000])
    return json.loads(lines[-1])


def _summary(r: dict) -> str:
    if not r.get("kernels"):
        return f"{r['case']:24} FAILED: {(r.get('error') or r.get('whole', {}).get('error', ''))[:300]}"
    worst = max(r["kernels"], key=lambda k: k.get("smem_bytes") or 0)
    spill = max((k.get("spill_store_bytes") or 0) + (k.get("spill_load_bytes") or 0) for k in r["kernels"])
    regs = max(k.get("registers") or 0 for k in r["kernels"])
    status = "ok" if r["ok"] else "FAILED: " + "; ".join(
        [r["whole"].get("error", "")[:300]] + [f"{k['name']}: {k['error'][:200]}" for k in r["kernels"] if not k["ok"]])
    return (f"{r['case']:24} whole {'ok' if r['whole']['ok'] else 'FAILED'} ({r['whole']['seconds']} s); max smem "
            f"{worst.get('smem_bytes')} B ({worst['name']}), max registers {regs}, max spill {spill} B: {status}")


def gpu_compile(c, workdir) -> dict:
    """Compiles every case for every target; writes ``gpu_compile_<arch>.json``; exit status 1 on a failure."""
    if c.backend not in BACKENDS:
        raise ValueError(f"--config.backend: {c.backend!r}; known: {', '.join(BACKENDS)}")
    if c.worker:
        arch, case = c.worker.split(";")
        print(json.dumps(compile_case(arch, case, c.backend)), flush=True)
        return {}
    spec = BACKENDS[c.backend]
    archs = [a for a in c.archs.split(",") if a] or list(spec["archs"])
    unknown = [a for a in archs if a not in spec["archs"]]
    if unknown and c.backend == "mosaic":
        raise ValueError(f"--config.archs: {unknown}: the Mosaic GPU kernels compile for sm_90a (H100 / H200) only: "
                         "wgmma is Hopper's (sm_80 has none; Blackwell's sm_100 would need tcgen05)")
    if unknown:
        raise ValueError(f"--config.archs: unknown {unknown}; known: {', '.join(_DEVICE_INFO)}")
    cases = [x for x in c.cases.split(",") if x] or list(spec["cases"])
    for case in cases:
        parse_case(case, c.backend)
    tools = ({"ptxas": _mosaic_ptxas_version()} if c.backend == "mosaic"
             else {"nvidia-cuda-nvcc-cu12": importlib.metadata.version("nvidia-cuda-nvcc-cu12")})
    failed = False
    for arch in archs:
        start, results = time.time(), []
        for case in cases:
            results.append(_run_child(arch, case, c.timeout, c.backend))
            print(f"{arch} {_summary(results[-1])}", flush=True)
        failed |= not all(r["ok"] for r in results)
        payload = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                   "device": f"none: deviceless compile for {arch} ({_DEVICE_INFO[arch]['kind']})",
                   "versions": {**versions(), spec["plugin"]: importlib.metadata.version(spec["plugin"]), **tools},
                   "command": " ".join(sys.argv),
                   "max_spill_bytes": MAX_SPILL_BYTES, "seconds": round(time.time() - start, 1), "cases": results}
        from bioxlstm_jax.io import write_json

        write_json(Path(workdir) / f"{spec['prefix']}_{arch}.json", payload)
    if failed:
        raise SystemExit(1)
    return {}


if __name__ == "__main__":
    cli(gpu_compile, get_config)
