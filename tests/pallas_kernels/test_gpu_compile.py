"""Every preset's kernels, forward and backward, compile for A100 (sm_80) and H100 / H200 (sm_90a) without
a GPU: XLA's GPU compiler deviceless, then each kernel's shared memory, registers and spills
(``benchmarks/gpu_compile.py``). Marker ``gpu_compile``: the Triton kernels; needs the CUDA 12 plugin
wheels, so the default run deselects it; CI installs them after the suite in its Python 3.11 leg and runs
``pytest -m gpu_compile``. Marker ``gpu_compile_mosaic``: the Mosaic GPU kernels for H100 (sm_90a); needs
jax >= 0.12.1 with the CUDA 13 plugin wheels and a CUDA 13 ptxas on PATH; CI runs ``pytest -m
gpu_compile_mosaic`` after the suite in its newest-JAX leg.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KERNELS = ("mlstm_chunk_states", "mlstm_chunk_outputs", "mlstm_chunk_state_grads", "mlstm_chunk_dq",
           "mlstm_chunk_dk", "mlstm_chunk_dv")


def _gpu_compile(tmp_path, result: str, *args: str) -> dict:
    """Runs ``benchmarks/gpu_compile.py`` with ``args``; its JSON ``result``, once every case passed."""
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_compile.py"), f"--workdir={tmp_path}", *args],
                         capture_output=True, text=True, timeout=3600, cwd=ROOT,
                         env={k: v for k, v in os.environ.items() if k != "XLA_FLAGS"})  # not the tests' cheap mode
    path = tmp_path / result
    assert path.exists(), res.stdout[-5000:] + res.stderr[-3000:]
    report = json.loads(path.read_text())
    failed = [c for c in report["cases"] if not c["ok"]]
    assert res.returncode == 0 and not failed, res.stdout[-5000:] + res.stderr[-3000:]
    return report


@pytest.mark.gpu_compile
@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
def test_every_preset_compiles_without_spills(arch, tmp_path):
    report = _gpu_compile(tmp_path, f"gpu_compile_{arch}.json", f"--config.archs={arch}")
    for case in report["cases"]:
        assert case["whole"]["ok"]
        names = {k["name"] for k in case["kernels"]}
        assert names == set(KERNELS), names
        for k in case["kernels"]:
            assert k["smem_bytes"] > 0 and k["registers"] > 0
            assert k["spill_store_bytes"] + k["spill_load_bytes"] <= report["max_spill_bytes"], (case["case"], k)


@pytest.mark.gpu_compile_mosaic
def test_mosaic_kernels_compile_for_h100(tmp_path):
    """Every Mosaic GPU kernel at TFLA's shape (128 / 256 head dims, chunk 64) and at the largest preset
    (prot_xlstm_102m: 512 / 512, chunk 256: the most shared memory and registers)."""
    cases = ["bfloat16:128:256:64", "bfloat16:512:512:256"]
    report = _gpu_compile(tmp_path, "gpu_compile_mosaic_sm_90a.json", "--config.backend=mosaic",
                          f"--config.cases={','.join(cases)}")
    assert report["versions"]["jax-cuda13-plugin"] and int(report["versions"]["ptxas"].split(".")[0]) >= 13
    assert [c["case"] for c in report["cases"]] == cases
    for case in report["cases"]:
        assert case["whole"]["ok"] and case["whole"]["seconds"] > 0
        kernels = {k["name"]: k for k in case["kernels"]}
        assert sorted(kernels) == sorted(f"{n}_mosaic" for n in KERNELS), case["kernels"]
        for k in case["kernels"]:
            assert k["ok"], (case["case"], k)
            assert len(k["grid"]) == 3 and min(k["grid"]) >= 1 and k["threads_per_block"] == 128, k
            assert 0 < k["registers"] <= 255 and 0 < k["smem_bytes"] <= 232448, k
            assert k["spill_store_bytes"] + k["spill_load_bytes"] <= report["max_spill_bytes"], (case["case"], k)
            assert k["tensor_core_ops"]["wgmma"] > 0 and k["tma_copies"]["gmem_to_smem"] > 0, k
        assert kernels["mlstm_chunk_states_mosaic"]["instances"] == 2  # forward, and recomputed in the backward
