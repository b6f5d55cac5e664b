"""Training as a command: kill -9 and SIGTERM then re-run resume exactly; two processes x 4 devices
(jax.distributed on localhost, gloo collectives), with or without a context axis, equal one process x 8
devices."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from bioxlstm_jax.training.checkpoints import read_params
from bioxlstm_jax.training.logger import read_metrics
from tests.helpers import xla_flags

SCRIPT = Path(__file__).with_name("tiny_experiment.py")
pytestmark = pytest.mark.xdist_group("processes")  # one worker builds the uninterrupted runs once
ROOT = Path(__file__).resolve().parents[2]
STEPS = 24
ARGS = [f"--config.steps={STEPS}", "--config.checkpoint_every=4", "--config.log_every=1", "--config.eval_every=0",
        "--config.seconds_per_batch=0.1"]


# the two-process comparison: unpacked rows, 8 steps (two checkpoints) are enough to compare every loss
UNPACKED_STEPS = 8
UNPACKED = ["--config.pack=False", "--config.seconds_per_batch=0", f"--config.steps={UNPACKED_STEPS}"]


def command(workdir, *extra):
    return [sys.executable, str(SCRIPT), f"--workdir={workdir}", *ARGS, *extra]


def env(devices=8):
    e = dict(os.environ, XLA_FLAGS=xla_flags(devices), JAX_PLATFORMS="cpu")
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT), e.get("PYTHONPATH", "")])
    return e


def run(workdir, *extra, devices=8):
    subprocess.run(command(workdir, *extra), env=env(devices), check=True, capture_output=True, timeout=600)


def losses(workdir):
    return [(r["step"], r["train/loss"]) for r in read_metrics(Path(workdir) / "metrics.jsonl") if "train/loss" in r]


def final_params(workdir):
    """The saved parameters of the last step, on one local device (whatever mesh saved them)."""
    return jax.tree.map(np.asarray, read_params(workdir, "latest"))


@pytest.fixture(scope="session")  # session: pytest-xdist may interleave other modules
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    run(workdir)
    return workdir


@pytest.fixture(scope="session")  # session: pytest-xdist may interleave other modules
def uninterrupted_unpacked(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("unpacked")
    run(workdir, *UNPACKED)
    return workdir


def interrupt(workdir, sig, after_step):
    """Starts the run, sends ``sig`` once ``after_step`` is logged, returns the exit code."""
    proc = subprocess.Popen(command(workdir), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        steps = [s for s, _ in losses(workdir)] if (workdir / "metrics.jsonl").exists() else []
        if steps and steps[-1] >= after_step:
            proc.send_signal(sig)
            break
        time.sleep(0.02)
    code = proc.wait(timeout=300)
    return code, proc.stderr.read().decode()


def test_kill_9_then_rerun_equals_uninterrupted(tmp_path, uninterrupted):
    code, _ = interrupt(tmp_path, signal.SIGKILL, after_step=10)
    assert code == -signal.SIGKILL
    done = losses(tmp_path)[-1][0]
    assert 10 <= done < STEPS, f"the run was not interrupted mid-way (last logged step {done})"
    run(tmp_path)
    assert losses(tmp_path) == losses(uninterrupted)
    for a, b in zip(jax.tree.leaves(final_params(tmp_path)), jax.tree.leaves(final_params(uninterrupted))):
        np.testing.assert_array_equal(a, b)


def test_sigterm_saves_and_exits_then_resumes(tmp_path, uninterrupted):
    code, err = interrupt(tmp_path, signal.SIGTERM, after_step=6)
    assert code == 0, err[-2000:]
    saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert saved[-1] == losses(tmp_path)[-1][0] < STEPS, (saved, losses(tmp_path)[-1])
    run(tmp_path)
    assert losses(tmp_path) == losses(uninterrupted)


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("mesh", ["", "--config.mesh.context=2"])
def test_two_processes_equal_one_process(tmp_path, uninterrupted_unpacked, mesh):
    """Unpacked rows: the global batches do not depend on the process count (see ``lm_batches``). With a
    context axis of 2 the sequences are also split over two devices of each process."""
    uninterrupted = uninterrupted_unpacked
    port = free_port()
    procs = [subprocess.Popen(command(tmp_path, f"--config.distributed.coordinator_address=localhost:{port}",
                                      "--config.distributed.num_processes=2", f"--config.distributed.process_id={i}",
                                      *UNPACKED, *filter(None, [mesh])),
                              env=env(devices=4), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for i in range(2)]
    for p in procs:
        assert p.wait(timeout=600) == 0, p.stderr.read().decode()[-3000:]
    ours, ref = dict(losses(tmp_path)), dict(losses(uninterrupted))
    assert ours.keys() == ref.keys()
    np.testing.assert_allclose([ours[k] for k in ref], [ref[k] for k in ref], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(final_params(tmp_path)), jax.tree.leaves(final_params(uninterrupted))):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
