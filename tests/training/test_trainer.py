"""The training loop: data parallelism and FSDP are exact, resume is exact, the NaN guard, outputs."""

import dataclasses
import json
import re
import struct

import chex
import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bioxlstm_jax.training import Task, make_mesh, train
from bioxlstm_jax.training.logger import read_metrics
from bioxlstm_jax.training.optim import make_optimizer
from bioxlstm_jax.training.trainer import init_state
from tests.training import tiny_experiment


def tiny(**changes):
    c = tiny_experiment.get_config()
    c.checkpoint_every, c.eval_every = 3, 3
    c.async_checkpoint = False
    c.mesh.fsdp_min_size = 64
    c.update_from_flattened_dict(changes)
    return c


def params_of(state):
    return jax.tree.map(np.asarray, jax.device_get(state.params))


def assert_params_close(a, b, rtol):
    """||a - b|| <= rtol ||b|| over the whole tree, and <= 10 rtol per tensor (tensors that start
    at zero, like the input-gate weights, hold only accumulated float32 gradient sums, whose
    reduction order differs between meshes)."""
    chex.assert_trees_all_equal_shapes(a, b)
    diff = lambda x, y: np.sum((np.asarray(x, np.float64) - y) ** 2)  # noqa: E731
    sq = lambda y: np.sum(np.asarray(y, np.float64) ** 2)  # noqa: E731
    total = np.sqrt(sum(diff(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))))
    assert total <= rtol * np.sqrt(sum(sq(y) for y in jax.tree.leaves(b))), total
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
        err = np.sqrt(diff(x, y) / max(sq(y), 1e-60))
        assert err <= 10 * rtol, f"{jax.tree_util.keystr(path)}: relative error {err:.2e} > {10 * rtol:.0e}"


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_data_parallel_equals_single_device(tmp_path, name):
    c = tiny(**{"optimizer.name": name, "steps": 3, "grad_accum": 1})
    task = tiny_experiment.build_task(c)
    one = train(c, tmp_path / "one", task, mesh=make_mesh(devices=jax.devices()[:1]))
    eight = train(c, tmp_path / "eight", task, mesh=make_mesh(data=8))
    start = init_state(task, make_optimizer(c.optimizer, c.steps)[0], c.seed,
                       next(iter(task.train_data(c.batch_size, 0, 1))))
    # the run moved the parameters far more than the tolerance
    assert max(float(jnp.max(jnp.abs(a - b))) for a, b in
               zip(jax.tree.leaves(params_of(one)), jax.tree.leaves(start.params))) > 1e-4
    assert_params_close(params_of(eight), params_of(one), 1e-6)


def test_fsdp_and_grad_accum_equal_data_parallel(tmp_path):
    c = tiny(steps=3)
    task = tiny_experiment.build_task(c)
    dp = train(c, tmp_path / "dp", task, mesh=make_mesh(data=8))
    fsdp = train(c, tmp_path / "fsdp", task, mesh=make_mesh(data=2, fsdp=4))
    sharded = [x.sharding.spec for x in jax.tree.leaves(fsdp.params) if "fsdp" in str(x.sharding.spec)]
    assert sharded, "no parameter was split over the fsdp axis"
    assert_params_close(params_of(fsdp), params_of(dp), 1e-6)
    c2 = tiny(steps=3, grad_accum=2, batch_size=16, **{"mesh.data": 8})
    c1 = tiny(steps=3, grad_accum=1, batch_size=16)
    task16 = tiny_experiment.build_task(c1)
    acc = train(c2, tmp_path / "acc", task16, mesh=make_mesh(data=8))
    full = train(c1, tmp_path / "full", task16, mesh=make_mesh(data=8))
    assert_params_close(params_of(acc), params_of(full), 1e-5)


def test_resume_into_another_mesh_equals_uninterrupted(tmp_path):
    c = tiny(steps=6)
    task = tiny_experiment.build_task(c)
    full = train(c, tmp_path / "full", task, mesh=make_mesh(data=8))
    train(tiny(steps=3), tmp_path / "split", task, mesh=make_mesh(data=8))
    resumed = train(c, tmp_path / "split", task, mesh=make_mesh(data=2, fsdp=4))
    assert int(resumed.step) == 6
    assert_params_close(params_of(resumed), params_of(full), 1e-5)
    losses = lambda d: [(r["step"], r["train/loss"]) for r in read_metrics(d / "metrics.jsonl") if "train/loss" in r]  # noqa: E731
    np.testing.assert_allclose(np.array(losses(tmp_path / "split")), np.array(losses(tmp_path / "full")), rtol=1e-5)


def test_pretrained_params_on_one_device_train_on_any_mesh(tmp_path):
    """A task's pretrained parameters, restored onto one device (as ``read_params`` does), start a run
    on a mesh of other devices (jax 0.12 refused the old closure over them: "incompatible devices")."""
    c = tiny(steps=2)
    base = tiny_experiment.build_task(c)
    batch = next(iter(base.train_data(c.batch_size, 0, 1)))
    other = base.init(jax.random.PRNGKey(7), batch)
    pretrained = {"backbone": jax.device_put(other["backbone"], jax.devices()[5])}
    task = dataclasses.replace(base, pretrained=pretrained)
    start = init_state(task, make_optimizer(c.optimizer, c.steps)[0], c.seed, batch, pretrained)
    chex.assert_trees_all_equal(start.params["backbone"], other["backbone"])
    assert not np.array_equal(start.params["backbone"]["token_embedding"]["embedding"],
                              base.init(jax.random.PRNGKey(c.seed), batch)["backbone"]["token_embedding"]["embedding"])
    one = train(c, tmp_path / "one", task, mesh=make_mesh(devices=jax.devices()[:1]))
    for name, mesh in (("dp", make_mesh(data=8)), ("fsdp", make_mesh(data=2, fsdp=4))):
        assert_params_close(params_of(train(c, tmp_path / name, task, mesh=mesh)), params_of(one), 1e-6)
    wrong = {"backbone": {**other["backbone"], "token_embedding": {"embedding": jnp.zeros((3, 16))}}}
    with pytest.raises(ValueError, match="'backbone' do not fit the model"):
        train(c, tmp_path / "wrong", dataclasses.replace(base, pretrained=wrong), mesh=make_mesh(data=8))


def poisoned_task(nan_from: int) -> Task:
    """Batches carry the step number; from ``nan_from`` on the loss is NaN."""
    c = tiny()
    base = tiny_experiment.build_task(c)

    def data(b, i, n):
        src = grain.MapDataset.range(10_000).map(
            lambda s: {"tokens": np.full((b, 8), 1 + s % 20, np.int32), "step": np.full((b,), s + 1, np.int32)})
        return src.to_iter_dataset()

    def loss(params, batch, rng):
        sums = base.loss(params, batch, rng)
        return {**sums, "loss": jnp.where(batch["step"][0] >= nan_from, jnp.nan, sums["loss"])}

    return Task(init=base.init, loss=loss, train_data=data)


def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path):
    c = tiny(steps=12, log_every=5, checkpoint_every=2)
    with pytest.raises(FloatingPointError, match=r"step 7;.*last good checkpoint is step 6"):
        train(c, tmp_path, poisoned_task(nan_from=7), mesh=make_mesh(data=8))
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())[-1] == 6
    # the saved state is finite
    import orbax.checkpoint as ocp

    saved = ocp.StandardCheckpointer().restore(tmp_path / "checkpoints" / "6" / "state")
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(saved["params"]))


def read_tensorboard_scalars(logdir):
    """tag -> [(step, value)] from the TFRecord event files (tensorboardX's own protobuf)."""
    from tensorboardX.proto import event_pb2

    out = {}
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            for v in event.summary.value:
                out.setdefault(v.tag, []).append((event.step, v.simple_value))
    return out


def test_outputs_metrics_tensorboard_plot_config(tmp_path):
    c = tiny(steps=4, eval_every=2, log_every=2)
    train(c, tmp_path, tiny_experiment.build_task(c), mesh=make_mesh(data=8))
    records = read_metrics(tmp_path / "metrics.jsonl")
    train_steps = [r["step"] for r in records if "train/loss" in r]
    assert train_steps == [2, 4]
    assert [r["step"] for r in records if "eval/loss" in r] == [2, 4]
    for r in records:
        if "train/loss" in r:
            assert np.isfinite(r["train/loss"]) and r["train/tokens_per_s"] > 0
            np.testing.assert_allclose(r["train/perplexity"], np.exp(r["train/loss"]), rtol=1e-5)
    scalars = read_tensorboard_scalars(tmp_path / "tensorboard")
    np.testing.assert_allclose([v for _, v in scalars["train/loss"]],
                               [r["train/loss"] for r in records if "train/loss" in r], rtol=1e-6)
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "config.json").read_text())["steps"] == 4
    assert (tmp_path / "best").is_dir()


def test_bad_batch_size_is_a_clear_error(tmp_path):
    c = tiny(batch_size=12)
    with pytest.raises(ValueError, match="batch_size=12: expected a multiple of grad_accum x data x fsdp devices = 1 x 8"):
        train(c, tmp_path, tiny_experiment.build_task(c), mesh=make_mesh(data=8))


def test_early_stopping_on_a_maximized_metric_and_eval_loss(tmp_path):
    """patience counts evaluations without a better best_metric; best_mode="max" keeps the largest;
    Task.eval_loss replaces the loss in evaluation only."""
    import dataclasses

    c = tiny(steps=30, eval_every=2, checkpoint_every=2, log_every=2, patience=2, best_mode="max", eval_steps=1)
    c.best_metric = "eval/accuracy"
    base = tiny_experiment.build_task(c)
    # one per evaluation (the best is the 2nd), after one read before training (best_metric's check)
    accuracies = iter([0.0, 0.5, 0.9, 0.7, 0.6, 0.6, 0.6])

    def eval_data(b, i, n):
        batch = next(iter(base.eval_data(b, i, n)))
        return [{**batch, "acc": np.full((len(batch["tokens"]),), next(accuracies), np.float32)}]

    def eval_loss(params, batch, rng):
        sums = base.loss(params, {k: v for k, v in batch.items() if k != "acc"}, rng)
        return {**sums, "correct": sums["weight"] * batch["acc"][0]}

    train(c, tmp_path, dataclasses.replace(base, eval_data=eval_data, eval_loss=eval_loss), mesh=make_mesh(data=8))
    records = read_metrics(tmp_path / "metrics.jsonl")
    evals = [(r["step"], r["eval/accuracy"]) for r in records if "eval/accuracy" in r]
    assert [s for s, _ in evals] == [2, 4, 6, 8]  # stopped 2 evaluations after the best
    np.testing.assert_allclose([a for _, a in evals], [0.5, 0.9, 0.7, 0.6], rtol=1e-6)
    assert [p.name for p in (tmp_path / "best").iterdir() if p.name.isdigit()] == ["4"]
    assert max(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == 8
    assert max(r["step"] for r in records) == 8


def test_a_run_killed_between_its_best_and_latest_writes_resumes_to_the_uninterrupted_run(tmp_path):
    """What SIGKILL leaves at each moment, rebuilt file by file from an uninterrupted run: after the
    best write of step 6 and before its latest write (best newer than latest: orbax's
    StepAlreadyExistsError on every re-run before), and in the middle of an async write (a temporary
    step folder) with a metrics line cut mid-write. The re-run ends with the uninterrupted losses and
    parameters. (tests/training/test_processes.py kills a real run.)"""
    import shutil

    from orbax.checkpoint._src.path.atomicity_types import TMP_DIR_SUFFIX

    c = tiny(steps=9, eval_every=3, checkpoint_every=3, keep_checkpoints=5)
    task = tiny_experiment.build_task(c)
    mesh = make_mesh(data=8)
    full = train(c, tmp_path / "full", task, mesh=mesh)
    losses = lambda d: [(r["step"], r.get("train/loss"), r.get("eval/loss")) for r in read_metrics(d / "metrics.jsonl")  # noqa: E731
                        if "plan" not in r]  # each (re)start's plan record aside
    for moment in ("after_best", "during_async_write"):
        killed = tmp_path / moment
        shutil.copytree(tmp_path / "full", killed)
        for step in (9, 6):
            shutil.rmtree(killed / "checkpoints" / str(step))
        if moment == "during_async_write":  # step 6's latest write had begun, best not yet; a metrics line cut
            shutil.rmtree(killed / "best" / "9", ignore_errors=True)
            shutil.copytree(tmp_path / "full" / "checkpoints" / "3", killed / "checkpoints" / f"6{TMP_DIR_SUFFIX}")
            with (killed / "metrics.jsonl").open("a") as f:
                f.write('{"step": 10, "train/lo')
        resumed = train(c, killed, task, mesh=mesh)
        assert int(resumed.step) == 9
        chex.assert_trees_all_equal(params_of(resumed), params_of(full))
        assert losses(killed) == losses(tmp_path / "full")
        assert sorted(p.name for p in (killed / "checkpoints").iterdir()) == ["3", "6", "9"]
        assert [p.name for p in (killed / "best").iterdir() if p.name.isdigit()] == \
            [p.name for p in (tmp_path / "full" / "best").iterdir() if p.name.isdigit()]


def test_a_workdir_of_another_configuration_is_refused_before_anything_is_written(tmp_path):
    c = tiny(steps=3)
    train(c, tmp_path, tiny_experiment.build_task(c), mesh=make_mesh(data=8))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.name != ".lock"}
    other = tiny(steps=6, seed=1, **{"model.embedding_dim": 32})
    with pytest.raises(ValueError, match=r"another configuration \(config.json: seed is 0 there, 1 here; "
                                         r"model.embedding_dim is 16 there, 32 here \| model.json: embedding_dim"):
        train(other, tmp_path, tiny_experiment.build_task(other), mesh=make_mesh(data=8))
    other = tiny(steps=6, num_sequences=48)  # other training data, refused, then allowed on purpose
    with pytest.raises(ValueError, match="num_sequences is 64 there, 48 here"):
        train(other, tmp_path, tiny_experiment.build_task(other), mesh=make_mesh(data=8))
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.name != ".lock"} == before
    # other data behind the same config (a file rewritten in place): caught by data.json
    same = tiny(steps=6)
    task = tiny_experiment.build_task(tiny(steps=6, num_sequences=48))
    with pytest.raises(ValueError, match="data.json: the training data differs"):
        train(same, tmp_path, dataclasses.replace(tiny_experiment.build_task(same), train_data=task.train_data),
              mesh=make_mesh(data=8))
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.name != ".lock"} == before
    other.allow_changes = "num_sequences"
    assert int(train(other, tmp_path, tiny_experiment.build_task(other), mesh=make_mesh(data=8)).step) == 6
    assert json.loads((tmp_path / "config.json").read_text())["num_sequences"] == 48


@pytest.mark.parametrize("key,value,message", [
    ("steps", -1, "--config.steps=-1: expected an integer >= 1"),
    ("batch_size", 0, "--config.batch_size=0: expected an integer >= 1"),
    ("log_every", 0, "--config.log_every=0: expected an integer >= 1"),
    ("eval_steps", 0, "--config.eval_steps=0: expected an integer >= 1"),
    ("optimizer.name", "adamx", "--config.optimizer.name='adamx': expected one of adamw, sgd"),
    ("best_metric", "eval/nope", "--config.best_metric='eval/nope': expected an evaluation metric, one of eval/accuracy, "
                                 "eval/loss, eval/perplexity"),
    ("allow_changes", "seed,nope", "--config.allow_changes='seed,nope': nope is not a config key"),
])
def test_a_bad_config_is_refused_before_anything_is_written(tmp_path, key, value, message):
    c = tiny(**{key: value})
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        train(c, tmp_path / "run", tiny_experiment.build_task(c), mesh=make_mesh(data=8))
    assert not (tmp_path / "run").exists()


def test_one_run_per_workdir_and_a_killed_holder_leaves_no_stale_lock(tmp_path):
    import subprocess
    import sys

    from bioxlstm_jax.io import WorkdirInUse, workdir_lock

    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from bioxlstm_jax.io import workdir_lock\n"
                               f"with workdir_lock({str(tmp_path)!r}):\n print('held', flush=True); time.sleep(600)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        c = tiny(steps=3)
        with pytest.raises(WorkdirInUse, match=rf"in use by pid {holder.pid} on \S+ since "):
            train(c, tmp_path, tiny_experiment.build_task(c), mesh=make_mesh(data=8))
        assert [p.name for p in tmp_path.iterdir()] == [".lock"]
    finally:
        holder.kill()
        holder.wait()
    with workdir_lock(tmp_path), workdir_lock(tmp_path):  # the kernel dropped the dead holder's lock; re-entrant
        assert f"pid {__import__('os').getpid()} " in (tmp_path / ".lock").read_text()
