"""Test setup, before JAX initialises its backends:

* 8 host CPU devices;
* on machines without an NVIDIA GPU, XLA's cheap compile mode (no LLVM optimisation passes, and the CPU
  backend's older elemental fusion emitter instead of its MLIR fusion emitters): the tests' models are
  tiny, so their time is compilation, and this cuts the suite's time by about a third (the emitter
  choice alone compiles a 4-block training step in 1.3 s instead of 2.1 s); the numerics are XLA's
  either way (every tolerance is unchanged), and benchmarks never run under it;
* one persistent XLA compilation cache per test session, shared by the test processes and the commands
  they start (each identical program compiles once; a fresh temporary folder, removed at the end).

Commands the tests start get the same flags (``tests.helpers.xla_flags``).
"""

import os
import shutil
import tempfile

CHEAP_COMPILE = ("--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true "
                 "--xla_cpu_use_fusion_emitters=false")
os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=8",
     "" if shutil.which("nvidia-smi") else CHEAP_COMPILE]
).strip()

_OWN_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # pytest-xdist workers inherit the controller's
    _OWN_CACHE = tempfile.mkdtemp(prefix="bioxlstm_jax_cache_")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax  # noqa: E402


def pytest_report_header(config):
    return f"jax {jax.__version__}, devices: {jax.device_count()} x {jax.devices()[0].platform}"


def pytest_unconfigure(config):
    if _OWN_CACHE:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


pytest_plugins = ["tests.runs"]  # run_command and the shared small runs (prot_run, chem_run, dna_mlm_ps_run)
