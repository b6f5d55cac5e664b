"""The package installs what the README promises; tests see 8 host devices."""

import pathlib
import re
import subprocess
import sys

import jax

import bioxlstm_jax.ops

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_eight_host_devices():
    assert len(jax.devices("cpu")) == 8


def test_public_ops_api():
    assert set(bioxlstm_jax.ops.__all__) == {
        "CHUNKWISE_KERNELS", "MLSTMState", "mlstm_chunkwise", "mlstm_parallel", "mlstm_recurrent", "mlstm_step",
        "MLSTMSummary", "mlstm_summary", "apply_summary", "SLSTMState", "slstm_scan", "slstm_step",
    }


def test_readme_quick_start_has_two_commands_and_ci_runs_the_second():
    readme = (ROOT / "README.md").read_text()
    assert readme.lstrip().startswith("# bioxlstm-jax")
    block = re.search(r"^## Quick start\s*\n+```bash\n(.*?)```", readme, re.S | re.M)
    assert block, "README.md needs a 'Quick start' section opening with a bash block"
    commands = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(commands) == 2
    assert "pip install" in commands[0] and "pip install" in commands[1] and "[test]" in commands[1]
    ci = subprocess.run(
        ["bash", "-c", "awk '/^## Quick start/{q=1} q && /^```/{n++; next} q && n==1 {print}' README.md | sed -n 2p"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    assert ci.stdout.strip() == commands[1]
    assert "torch==2.13.0" in (ROOT / ".ci" / "run").read_text()


def test_pallas_kernels_imports_without_the_library():
    code = "import sys, pallas_kernels; assert 'bioxlstm_jax' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_public_model_api():
    import bioxlstm_jax.convert
    import bioxlstm_jax.nn
    import bioxlstm_jax.presets

    assert {"XLSTMLM", "XLSTMConfig", "XLSTMClassifier", "zero_state", "prefill", "reverse_complement"} <= set(
        bioxlstm_jax.nn.__all__
    )
    assert set(bioxlstm_jax.presets.__all__) == {"names", "get"}
    assert {"from_torch_xlstm", "convert_checkpoint", "load_converted"} <= set(bioxlstm_jax.convert.__all__)


def test_nn_imports_no_torch():
    code = "import sys, bioxlstm_jax.nn, bioxlstm_jax.presets, bioxlstm_jax.convert; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
