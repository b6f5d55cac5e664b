"""What every benchmark shares.

* The command line of the jobs: ``python benchmarks/<name>.py [--workdir DIR] [--config.key=value ...]``
  (``cli``); results go to ``benchmarks/results`` unless ``--workdir`` says otherwise. Lists of numbers
  are tuples (``--config.seq_lens=1024,4096``), lists of cases comma-separated strings
  (``--config.cases=prot_xlstm_26m:1024:none,prot_xlstm_26m:1024:block``).
* Each result file records the date, the device and the package versions (``save_results``), and is
  written atomically.
* Measurements that must not share a process (memory) run in a worker: the same script with
  ``--config.worker=<impl>`` (``run_worker``), which prints one JSON line last.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

__all__ = ["RESULTS_DIR", "cli", "device_info", "device_name", "versions", "save_results", "run_worker"]


def cli(bench, get_config) -> None:
    """``bench(config, workdir)`` behind the jobs' command line (default workdir: benchmarks/results)."""
    from bioxlstm_jax.jobs import run

    run(bench, get_config, str(RESULTS_DIR))


def device_info() -> dict:
    import jax

    d = jax.devices()[0]
    return {"platform": d.platform, "device_kind": d.device_kind, "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count()}


def device_name() -> str:
    """``cpu``, or the GPU's kind as a file-name part (``nvidia_h200``)."""
    info = device_info()
    if info["platform"] != "gpu":
        return "cpu"
    return "".join(ch if ch.isalnum() else "_" for ch in info["device_kind"].lower()).strip("_")


def versions(*extra: str) -> dict:
    """Python and the versions of jax, jaxlib, flax, numpy and ``extra`` packages (None when absent)."""
    out = {"python": platform.python_version()}
    for name in ("jax", "jaxlib", "flax", "numpy", *extra):
        try:
            out[name] = getattr(__import__(name), "__version__", "?")
        except ImportError:
            out[name] = None
    return out


def save_results(workdir, basename: str, fields: dict, *, extra_versions=("torch", "xlstm")) -> Path:
    """Writes ``<workdir>/<basename>_<device>.json`` with the date, device, versions and ``fields``."""
    from bioxlstm_jax.io import write_json

    payload = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "device": device_info(), "versions": versions(*extra_versions), "command": " ".join(sys.argv),
               **fields}
    return write_json(Path(workdir) / f"{basename}_{device_name()}.json", payload)


def run_worker(script: str, timeout: float | None = None, **config) -> dict:
    """Runs ``python <script> --config.key=value ...`` in a fresh process and returns the JSON object of its
    last output line, or ``{"error": ...}`` (exit status, last error line, or the timeout)."""
    args = [f"--config.{k}={v}" for k, v in config.items() if v is not None]
    env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    try:
        p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True,
                           timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    lines = p.stdout.strip().splitlines()
    if p.returncode < 0:
        return {"error": f"killed by signal {-p.returncode} (out of memory?)"}
    if p.returncode != 0 or not lines:
        tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or [f"exit {p.returncode}"]
        return {"error": f"worker exited {p.returncode}: {tail[0][:300]}"}
    return json.loads(lines[-1])
