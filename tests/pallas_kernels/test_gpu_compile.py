"""Every preset's kernels, forward and backward, compile for A100 (sm_80) and H100 / H200 (sm_90a) without
a GPU: XLA's GPU compiler deviceless, then each kernel's shared memory, registers and spills
(``benchmarks/gpu_compile.py``). Marker ``gpu_compile``: needs the CUDA plugin wheels, so the default run
deselects it; CI installs them after the suite in its Python 3.11 leg and runs ``pytest -m gpu_compile``.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.gpu_compile


@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
def test_every_preset_compiles_without_spills(arch, tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_compile.py"), f"--workdir={tmp_path}",
                          f"--config.archs={arch}"], capture_output=True, text=True, timeout=3600, cwd=ROOT,
                         env={k: v for k, v in os.environ.items() if k != "XLA_FLAGS"})  # not the tests' cheap mode
    report = json.loads((tmp_path / f"gpu_compile_{arch}.json").read_text())
    failed = [c for c in report["cases"] if not c["ok"]]
    assert res.returncode == 0 and not failed, res.stdout[-5000:] + res.stderr[-3000:]
    for case in report["cases"]:
        assert case["whole"]["ok"]
        names = {k["name"] for k in case["kernels"]}
        assert names == {"mlstm_chunk_states", "mlstm_chunk_outputs", "mlstm_chunk_state_grads", "mlstm_chunk_dq",
                         "mlstm_chunk_dk", "mlstm_chunk_dv"}, names
        for k in case["kernels"]:
            assert k["smem_bytes"] > 0 and k["registers"] > 0
            assert k["spill_store_bytes"] + k["spill_load_bytes"] <= report["max_spill_bytes"], (case["case"], k)
