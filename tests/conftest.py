"""Test setup, before JAX initialises its backends:

* 8 host CPU devices;
* on machines without an NVIDIA GPU, XLA's cheap compile mode (no LLVM optimisation passes, and, where
  the jaxlib still has it (< 0.12), the CPU backend's older elemental fusion emitter instead of its MLIR
  fusion emitters; each flag is kept only if this jaxlib accepts it): the tests' models are
  tiny, so their time is compilation, and this cuts the suite's time by about a third (the emitter
  choice alone compiles a 4-block training step in 1.3 s instead of 2.1 s); the numerics are XLA's
  either way (every tolerance is unchanged), and benchmarks never run under it;
* one persistent XLA compilation cache per test session, shared by the test processes and the commands
  they start (each identical program compiles once; a fresh temporary folder, removed at the end).

Commands the tests start get the same flags (``tests.helpers.xla_flags``).
"""

import os
import shutil
import subprocess
import sys
import tempfile

CHEAP_COMPILE = ("--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true",
                 "--xla_cpu_use_fusion_emitters=false")


def _known_xla_flags(flags) -> list[str]:
    """The ``flags`` this jaxlib accepts: jaxlib aborts the process on an unknown ``XLA_FLAGS`` entry
    (0.12 dropped ``--xla_cpu_use_fusion_emitters``), so each is tried in a short child process (~1 s, in
    parallel, once per test session; the workers and commands inherit the result)."""
    def start(fs):
        return subprocess.Popen([sys.executable, "-c", "import jax; jax.devices()"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=dict(os.environ, XLA_FLAGS=" ".join(fs),
                                                                     JAX_PLATFORMS="cpu"))
    if start(flags).wait() == 0:
        return list(flags)
    tries = [(f, start([f])) for f in flags]
    return [f for f, p in tries if p.wait() == 0]


if "BIOXLSTM_TEST_XLA_FLAGS" not in os.environ:  # the controller; pytest-xdist workers inherit both variables
    os.environ["BIOXLSTM_TEST_XLA_FLAGS"] = " ".join(
        [os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=8",
         *([] if shutil.which("nvidia-smi") else _known_xla_flags(CHEAP_COMPILE))]).strip()
os.environ["XLA_FLAGS"] = os.environ["BIOXLSTM_TEST_XLA_FLAGS"]

_OWN_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # pytest-xdist workers inherit the controller's
    _OWN_CACHE = tempfile.mkdtemp(prefix="bioxlstm_jax_cache_")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax  # noqa: E402
import pytest  # noqa: E402


def _has_torch() -> bool:
    """PyTorch and the packages the ``torch`` tests run on it."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("torch", "xlstm", "fcd"))


def _mosaic_jax(item) -> tuple[int, int]:
    """The jax a ``mosaic`` test needs: ``pytest.mark.mosaic(jax=(0, 11))``; default (0, 12), where Pallas's
    GPU interpret mode runs wgmma (0.11.2's has no rule for it; 0.10.2's Mosaic GPU API differs)."""
    return item.get_closest_marker("mosaic").kwargs.get("jax", (0, 12))


@pytest.hookimpl(trylast=True)  # after `-m` has deselected what it deselects
def pytest_collection_modifyitems(config, items):
    """Tests marked ``torch`` (parity with the official PyTorch ``xlstm``, FCD) need PyTorch, which the test
    extra installs on Python 3.11 only (on 3.12+ PyPI's torch is a multi-GB CUDA build): there, without
    PyTorch, they are deselected, and the header and the summary say so. On 3.11 a missing PyTorch is an
    error, never a skip. Tests marked ``mosaic`` run the Mosaic GPU kernels in GPU interpret mode, which
    runs their wgmma from jax 0.12 (or only lower them, from jax 0.11): on older jax they are deselected,
    and the summary says so."""
    deselected = {}
    needs = [item for item in items if item.get_closest_marker("torch")]
    if needs and not _has_torch():
        if sys.version_info < (3, 12):
            raise pytest.UsageError(f"{len(needs)} selected tests need PyTorch, xlstm and fcd, which the test extra "
                                    "installs on Python 3.11: pip install torch==2.13.0 (CPU), then the test extra; "
                                    "or add -m 'not torch'")
        deselected["torch"] = needs
    needs = [item for item in items if item.get_closest_marker("mosaic")
             and jax.__version_info__ < _mosaic_jax(item)]
    if needs:
        deselected["mosaic"] = needs
    for marker, gone in deselected.items():
        config.hook.pytest_deselected(items=gone)
        items[:] = [item for item in items if item not in gone]
    counts = {marker: len(gone) for marker, gone in deselected.items()}
    config._bioxlstm_deselected = counts
    if hasattr(config, "workeroutput"):  # a pytest-xdist worker: tell the controller, which prints the summary
        config.workeroutput["bioxlstm_deselected"] = counts


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """pytest-xdist controller: every worker collects (and deselects) the same tests."""
    counts = getattr(node, "workeroutput", {}).get("bioxlstm_deselected", {})
    mine = getattr(node.config, "_bioxlstm_deselected", {})
    node.config._bioxlstm_deselected = {m: max(n, mine.get(m, 0)) for m, n in {**mine, **counts}.items()}


_WHY_DESELECTED = {
    "torch": lambda: (f"no PyTorch on Python {sys.version_info.major}.{sys.version_info.minor} (the test extra "
                      "installs it on 3.11 only; CI runs them in its Python 3.11 leg)"),
    "mosaic": lambda: (f"jax {jax.__version__} is older than they need (the Mosaic GPU kernels in GPU interpret "
                       "mode: jax >= 0.12; lowered for CUDA: >= 0.11; CI runs them in its newest-JAX leg)"),
}


def pytest_terminal_summary(terminalreporter, config):
    for marker, n in getattr(config, "_bioxlstm_deselected", {}).items():
        if n:
            terminalreporter.write_line(f"{n} tests marked `{marker}` deselected: {_WHY_DESELECTED[marker]()}",
                                        yellow=True)


def pytest_report_header(config):
    return (f"jax {jax.__version__}, devices: {jax.device_count()} x {jax.devices()[0].platform}, "
            f"XLA_FLAGS: {os.environ['XLA_FLAGS']}")


def pytest_unconfigure(config):
    if _OWN_CACHE:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


pytest_plugins = ["tests.runs"]  # run_command and the shared small runs (prot_run, chem_run, dna_mlm_ps_run)
